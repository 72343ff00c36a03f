"""The dashboard's read screens: overview, runs, run detail, failures, workers, queues."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from tasktrail import stats
from tasktrail.conf import settings
from tasktrail.connection import get_redis
from tasktrail.events import parse_id
from tasktrail.flusher import flush_error
from tasktrail.models import AuditEntry, TaskRun
from tasktrail.operations import BadFilter, RunFilter
from tasktrail.pagination import BadCursor, page
from tasktrail.redaction import redact
from tasktrail.replay import REPLAYABLE
from tasktrail.runs import Run, find_run
from tasktrail.status import FINISHED, Status
from tasktrail.traces import trace_url
from tasktrail.workers import WorkerInfo, list_workers

from . import charts, queue_controls
from .access import can_change, staff_required

logger = logging.getLogger("tasktrail")

TIMELINE_EVENTS = 300
REDIS_DOWN = (
    "Redis is unreachable: workers, consumers and live events are unknown for now; "
    "runs and counts come from the database."
)
FAMILY_SIZE = 50


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> TemplateResponse:
    context.setdefault("can_change", can_change(request.user))
    context.setdefault("statuses", Status.values)
    return TemplateResponse(request, f"tasktrail/dashboard/{template}", context, status=status)


def _workers() -> tuple[list[WorkerInfo], dict[str, str]]:
    """The workers Redis knows of, or none and an ``error`` for the page's banner: the
    rest of a screen comes from the database and still shows while Redis is down."""
    try:
        return list_workers(), {}
    except redis.RedisError as exc:
        logger.warning("tasktrail: dashboard without Redis: %s", exc)
        return [], {"error": REDIS_DOWN}


@staff_required
def overview(request: HttpRequest) -> HttpResponseBase:
    now = timezone.now()
    hour = stats.throughput(timedelta(hours=1), "minute", now)
    day = stats.throughput(timedelta(days=1), "hour", now)
    workers, down = _workers()
    return _render(
        request,
        "overview.html",
        {
            **down,
            "section": "overview",
            "counts": stats.status_counts(now - timedelta(days=1)),
            "hour_chart": charts.bar_chart("Last hour, per minute", hour, "%H:%M"),
            "day_chart": charts.bar_chart("Last 24 hours, per hour", day, "%d %H:00"),
            "queues": stats.queue_overview(workers),
            "workers_online": sum(1 for w in workers if w.online),
            "workers_seen": len(workers),
            "now": now,
        },
    )


def _listing(
    request: HttpRequest, rows: QuerySet[TaskRun], run_filter: RunFilter
) -> dict[str, Any]:
    size = int(settings.LIST_PAGE_SIZE)
    runs, following = page(rows, request.GET.get("cursor") or None, size)
    params = run_filter.as_params()
    return {"runs": runs, "next_cursor": following, "filter": run_filter, "params": params}


def _filtered(request: HttpRequest, **fixed: str) -> RunFilter | str:
    try:
        return RunFilter.from_params({**request.GET.dict(), **fixed})
    except BadFilter as exc:
        return str(exc)


@staff_required
def runs(request: HttpRequest) -> HttpResponseBase:
    run_filter = _filtered(request)
    if isinstance(run_filter, str):
        return _render(request, "runs.html", {"section": "runs", "error": run_filter}, 400)
    if run_filter.search and find_run(run_filter.search) is not None:
        return redirect("tasktrail-dashboard:run", run_id=run_filter.search)
    try:
        context = _listing(request, run_filter.queryset(), run_filter)
    except BadCursor as exc:
        return _render(request, "runs.html", {"section": "runs", "error": str(exc)}, 400)
    return _render(request, "runs.html", {"section": "runs", **context})


@staff_required
def failures(request: HttpRequest) -> HttpResponseBase:
    run_filter = _filtered(request, status=Status.FAILED)
    if isinstance(run_filter, str):
        return _render(request, "failures.html", {"section": "failures", "error": run_filter}, 400)
    try:
        context = _listing(request, run_filter.queryset(), run_filter)
    except BadCursor as exc:
        return _render(request, "failures.html", {"section": "failures", "error": str(exc)}, 400)
    return _render(request, "failures.html", {"section": "failures", **context})


def _timeline(run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    from tasktrail import keys

    entries: Any = get_redis().xrevrange(keys.run_stream(run_id), count=TIMELINE_EVENTS)
    timeline, feed = [], []
    last = ""
    for entry_id, values in reversed(entries):
        event_id = last = entry_id.decode()
        kind = values.get(b"kind", b"").decode()
        data = json.loads(values.get(b"data") or b"{}")
        at = datetime.fromtimestamp(parse_id(event_id)[0] / 1000, tz=UTC)
        item = {"id": event_id, "kind": kind, "data": data, "at": at}
        if kind == "feed":
            feed.append(item)
        elif kind != "progress":
            timeline.append(item)
    return timeline, feed, last


@staff_required
def run_detail(request: HttpRequest, run_id: str) -> HttpResponseBase:
    run = find_run(run_id)
    if run is None:
        raise Http404("No such run.")
    return render_run(request, run)


def render_run(
    request: HttpRequest, run: Run, replay_form: dict[str, str] | None = None, status: int = 200
) -> TemplateResponse:
    """The run page; ``replay_form`` keeps a refused edit (its text and the error)."""
    try:
        timeline, feed, last_event = _timeline(run.id)
    except Exception:
        timeline, feed, last_event = [], [], ""
    family: list[TaskRun] = []
    if run.root_id:
        family = list(
            TaskRun.objects.filter(root_id=run.root_id).order_by("enqueued_at")[:FAMILY_SIZE]
        )
    args_json = json.dumps(redact(run.args), indent=2, default=str)
    kwargs_json = json.dumps(redact(run.kwargs), indent=2, default=str)
    return _render(
        request,
        "run_detail.html",
        {
            "section": "runs",
            "run": run,
            "args_json": args_json,
            "kwargs_json": kwargs_json,
            "result_json": json.dumps(run.result, indent=2, default=str),
            "timeline": timeline,
            "feed": feed,
            "last_event": last_event,
            "family": family if len(family) > 1 else [],
            "in_workflow": bool(
                len(family) > 1 or run.group_id or run.parent_id or run.root_id not in ("", run.id)
            ),
            "audit": AuditEntry.objects.filter(run_id=run.id)[:20],
            "finished": run.status in FINISHED,
            "retryable": run.status in (Status.FAILED, Status.CANCELLED),
            "replayable": run.status in REPLAYABLE,
            "replay": replay_form or {"args": args_json, "kwargs": kwargs_json},
            "flush_error": flush_error(run.id),
            "trace_url": trace_url(run.trace_id, run.span_id),
        },
        status,
    )


@staff_required
def workers(request: HttpRequest) -> HttpResponseBase:
    found, down = _workers()
    ordered = sorted(found, key=lambda w: (not w.online, w.hostname))
    return _render(request, "workers.html", {**down, "section": "workers", "workers": ordered})


@staff_required
def queues(request: HttpRequest) -> HttpResponseBase:
    now = timezone.now()
    workers, down = _workers()
    found = stats.queue_overview(workers)
    controls = queue_controls.page_context({q.name for q in found})
    rows = [
        {"queue": q, "age": q.oldest_age(now), "paused": q.name in controls["paused"]}
        for q in found
    ]
    context = {**down, **controls, "section": "queues", "queues": rows}
    return _render(request, "queues.html", context)
