"""Beat schedules: ``CELERY_BEAT_SCHEDULE`` and django-celery-beat's periodic tasks.

For each entry: its schedule, when it runs next, its last run (matched by task name
through the ``(task, enqueued_at)`` index) with a link to the record, a "run now"
button, and pause/resume where django-celery-beat stores the entry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from tasktrail import audit
from tasktrail.models import AuditEntry, TaskRun

from .access import can_change, change_required, staff_required

logger = logging.getLogger("tasktrail")
SETTINGS_SOURCE = "CELERY_BEAT_SCHEDULE"
DATABASE_SOURCE = "django-celery-beat"


@dataclass(frozen=True, kw_only=True)
class ScheduleEntry:
    key: str
    name: str
    task: str
    source: str
    schedule: str
    enabled: bool = True
    next_run_at: datetime | None = None
    last_run: TaskRun | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    periodic_task_id: int | None = None


def _app() -> Any:
    from celery import current_app

    return current_app


def beat_is_installed() -> bool:
    return apps.is_installed("django_celery_beat")


def _describe(schedule: Any) -> str:
    return str(schedule).strip("<>")


def _next_run(schedule: Any, last_run_at: datetime | None, now: datetime) -> datetime | None:
    try:
        remaining: timedelta = schedule.remaining_estimate(last_run_at or now)
        return now + remaining
    except Exception:
        return None


def _last_run(task: str) -> TaskRun | None:
    return TaskRun.objects.filter(task=task).order_by("-enqueued_at").first()


def _from_settings(now: datetime) -> list[ScheduleEntry]:
    from celery.schedules import maybe_schedule

    app = _app()
    entries = []
    for name, spec in sorted((app.conf.beat_schedule or {}).items()):
        schedule = maybe_schedule(spec.get("schedule"), app=app)
        last = _last_run(str(spec.get("task", "")))
        entries.append(
            ScheduleEntry(
                key=f"settings:{name}",
                name=name,
                task=str(spec.get("task", "")),
                source=SETTINGS_SOURCE,
                schedule=_describe(schedule),
                next_run_at=_next_run(schedule, last.enqueued_at if last else None, now),
                last_run=last,
                args=list(spec.get("args") or ()),
                kwargs=dict(spec.get("kwargs") or {}),
                options=dict(spec.get("options") or {}),
            )
        )
    return entries


def _from_database(now: datetime) -> list[ScheduleEntry]:
    from django_celery_beat.models import PeriodicTask  # type: ignore[import-untyped]

    entries = []
    for periodic in PeriodicTask.objects.order_by("name")[:500]:
        schedule = periodic.schedule
        entries.append(
            ScheduleEntry(
                key=f"db:{periodic.pk}",
                name=periodic.name,
                task=periodic.task,
                source=DATABASE_SOURCE,
                schedule=_describe(schedule),
                enabled=periodic.enabled,
                next_run_at=_next_run(schedule, periodic.last_run_at, now)
                if periodic.enabled
                else None,
                last_run=_last_run(periodic.task),
                args=json.loads(periodic.args or "[]"),
                kwargs=json.loads(periodic.kwargs or "{}"),
                options={"queue": periodic.queue} if periodic.queue else {},
                periodic_task_id=periodic.pk,
            )
        )
    return entries


def list_schedules() -> list[ScheduleEntry]:
    now = timezone.now()
    entries = _from_settings(now)
    if beat_is_installed():
        entries += _from_database(now)
    return entries


def run_entry_now(entry: ScheduleEntry) -> str:
    """Publish the entry's task with its arguments now; return the new run's id."""
    options = {k: v for k, v in entry.options.items() if k in ("queue", "priority", "expires")}
    result = _app().send_task(entry.task, args=entry.args, kwargs=entry.kwargs, **options)
    return str(result.id)


def set_enabled(periodic_task_id: int, enabled: bool) -> str:
    from django_celery_beat.models import PeriodicTask

    periodic = PeriodicTask.objects.get(pk=periodic_task_id)
    periodic.enabled = enabled
    periodic.save()  # notifies the beat's DatabaseScheduler
    return str(periodic.name)


@staff_required
def schedules(request: HttpRequest) -> HttpResponseBase:
    return TemplateResponse(
        request,
        "tasktrail/dashboard/schedules.html",
        {
            "section": "schedules",
            "entries": list_schedules(),
            "beat_installed": beat_is_installed(),
            "can_change": can_change(request.user),
        },
    )


def _entry(key: str) -> ScheduleEntry | None:
    return next((e for e in list_schedules() if e.key == key), None)


@change_required
def run_now(request: HttpRequest) -> HttpResponseBase:
    entry = _entry(request.POST.get("key", ""))
    if entry is None:
        messages.error(request, "No such schedule entry.")
        return redirect("tasktrail-dashboard:schedules")
    run_id = run_entry_now(entry)
    audit.from_request(request, AuditEntry.Action.RUN_NOW, schedule=entry.name, new_run=run_id)
    logger.info("tasktrail: %s ran schedule %s now as %s", request.user, entry.name, run_id)
    messages.success(request, f"{entry.name}: published run {run_id}.")
    return redirect("tasktrail-dashboard:run", run_id=run_id)


@change_required
def toggle(request: HttpRequest) -> HttpResponseBase:
    entry = _entry(request.POST.get("key", ""))
    if entry is None or entry.periodic_task_id is None:
        messages.error(request, "Only django-celery-beat entries can be paused.")
        return redirect("tasktrail-dashboard:schedules")
    enabled = request.POST.get("enabled") == "1"
    name = set_enabled(entry.periodic_task_id, enabled)
    action = AuditEntry.Action.RESUME if enabled else AuditEntry.Action.PAUSE
    audit.from_request(request, action, schedule=name)
    verb = "resumed" if enabled else "paused"
    logger.info("tasktrail: %s %s schedule %s", request.user, verb, name)
    messages.success(request, f"{name} {verb}.")
    return redirect("tasktrail-dashboard:schedules")
