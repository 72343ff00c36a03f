"""Live updates for the dashboard: the firehose and one run's events, as SSE (staff only).

Both reuse :func:`tasktrail.sse.event_stream`, so they resume with ``Last-Event-ID``
(header, or ``?last_event_id=``) exactly like the public API's streams.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from tasktrail import keys
from tasktrail.access import is_staff
from tasktrail.conf import settings
from tasktrail.events import parse_id
from tasktrail.http import RETRY_AFTER, query_problem, redis_is_down
from tasktrail.runs import afind_run
from tasktrail.sse import event_stream, merged, sse_response


async def _staff(request: HttpRequest) -> bool:
    auser = getattr(request, "auser", None)
    user: Any = await auser() if auser is not None else AnonymousUser()
    return is_staff(user)


def _last_event_id(request: HttpRequest) -> str | None:
    value = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if not value:
        return None
    parse_id(value)  # ValueError on nonsense
    return value


async def _redis_down() -> HttpResponse | None:
    """A stream needs Redis: without it, a 503 before the first byte (not a 200 that
    breaks off at once); the page's EventSource retries after ``Retry-After``."""
    if not await redis_is_down():
        return None
    refused = _refused(503, "Redis is unreachable; live updates resume when it is back.")
    refused["Retry-After"] = str(RETRY_AFTER)
    return refused


def _refused(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain")


async def firehose(request: HttpRequest) -> HttpResponseBase:
    """Every run's events as they happen (the runs screen updates its rows from it)."""
    if not await _staff(request):
        return _refused(403, "Staff only.")
    if (problem := query_problem(request)) is not None:
        return _refused(400, problem)
    try:
        last_id = _last_event_id(request)
    except ValueError:
        return _refused(400, "Malformed Last-Event-ID.")
    if (down := await _redis_down()) is not None:
        return down
    streams = [
        event_stream(
            stream=stream,
            channel=keys.channel(stream),
            last_id=last_id,
            opening=None,
            stops=lambda frame: False,
            keepalive=float(settings.KEEPALIVE_INTERVAL),
        )
        for stream in (keys.firehose_stream(base) for base in keys.bases())
    ]
    # One firehose per shard on a Redis Cluster.
    return sse_response(streams[0] if len(streams) == 1 else merged(streams))


async def run_events(request: HttpRequest, run_id: str) -> HttpResponseBase:
    """One run's events: a ``state`` snapshot first (unless resuming), then live."""
    if not await _staff(request):
        return _refused(403, "Staff only.")
    if (problem := query_problem(request)) is not None:
        return _refused(400, problem)
    try:
        last_id = _last_event_id(request)
    except ValueError:
        return _refused(400, "Malformed Last-Event-ID.")
    run = await afind_run(run_id) if run_id else None  # "": the runid converter refused it
    if run is None:
        return _refused(404, "No such run.")
    if (down := await _redis_down()) is not None:
        return down
    stream = keys.run_stream(run.id)

    async def opening() -> tuple[list[bytes], str | None, bool]:
        body = json.dumps({"kind": "state", **run.as_json()}, separators=(",", ":"))
        return [f"event: state\ndata: {body}\n\n".encode()], "0-0", run.is_finished

    return sse_response(
        event_stream(
            stream=stream,
            channel=keys.channel(stream),
            last_id=last_id,
            opening=opening,
            keepalive=float(settings.KEEPALIVE_INTERVAL),
        )
    )
