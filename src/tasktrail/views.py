"""The HTTP API: run status, run events (SSE), subject events (SSE) and the run list.

Every view is async (streams need an ASGI server; the JSON views also work under
WSGI). Invisible and unknown runs are both 404; bad input is a 4xx with JSON.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import actions, ids, keys
from .access import can_act, can_view, can_view_event, is_staff
from .authentication import authenticate
from .conf import settings
from .connection import get_async_redis
from .events import END_ID, Frame, parse_id
from .http import (
    accepted,
    allow,
    error,
    has_control_character,
    json_errors,
    not_found,
    redis_is_down,
    run_urls,
    unavailable,
)
from .models import TaskRun
from .ownership import subject_label
from .pagination import BadCursor, decode_cursor, page
from .records import RunData, decode_hash, fields_from_hash, fields_from_model
from .runs import Run, afind_run
from .sse import event_stream, read_tail, server_send, shared_reads, sse_response
from .status import Status

SUBJECT_REPLAY = 500
MAX_PAGE = 200
TERMINATE = ("1", "true")  # docs/openapi.yaml's enum
MALFORMED_ID = (
    f"Malformed run id: expected 1 to {ids.MAX_LENGTH} printable characters "
    f"(escape one holding '/' as '{ids.ESCAPE}' + its URL-safe base64)."
)


def _valid_id(run_id: str) -> bool:
    return ids.is_valid(run_id)


def _token(request: HttpRequest) -> str | None:
    return request.GET.get("token") or None


def _run_json(run: RunData, request: HttpRequest) -> dict[str, Any]:
    return {**run.as_json(), **run_urls(run.id, request, _token(request))}


async def _visible_run(request: HttpRequest, run_id: str) -> Run | HttpResponseBase:
    if not _valid_id(run_id):
        return error(400, MALFORMED_ID)
    user = await authenticate(request)
    if isinstance(user, HttpResponseBase):
        return user
    run = await afind_run(run_id)
    if run is None or not can_view(user, run, _token(request)):
        return not_found()
    return run


@allow("GET", "HEAD")
async def run_detail(request: HttpRequest, run_id: str) -> HttpResponseBase:
    run = await _visible_run(request, run_id)
    if isinstance(run, HttpResponseBase):
        return run
    return JsonResponse(_run_json(run, request))


def _last_event_id(request: HttpRequest) -> str | HttpResponseBase | None:
    value = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if not value:
        return None
    try:
        parse_id(value)
    except ValueError:
        return error(
            400, "Malformed Last-Event-ID: expected an event id such as '1700000000000-0'."
        )
    return value


async def _redis_down() -> HttpResponseBase | None:
    """A stream needs Redis (its log and its wake-ups): without it, answer a JSON 503
    before the first byte, rather than a 200 whose body breaks off at once."""
    return unavailable("The event store (Redis)") if await redis_is_down() else None


async def _newest_event_id(stream: str) -> str | None:
    try:
        tail: Any = await get_async_redis().xrevrange(stream, count=1)
    except redis.RedisError:
        return None
    return tail[0][0].decode() if tail else None


# The record and its stream's last event id (false when the stream is empty).
_SNAPSHOT = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
return {redis.call('HGETALL', KEYS[1]), last[1] and last[1][1] or false}
"""


@allow("GET")
async def run_events(request: HttpRequest, run_id: str) -> HttpResponseBase:
    run = await _visible_run(request, run_id)
    if isinstance(run, HttpResponseBase):
        return run
    last_id = _last_event_id(request)
    if isinstance(last_id, HttpResponseBase):
        return last_id
    if (down := await _redis_down()) is not None:
        return down
    stream = keys.run_stream(run_id)
    from_start = False
    if last_id is not None:
        newest = await _newest_event_id(stream)
        seen_all = last_id == END_ID or (
            newest is not None and parse_id(newest) <= parse_id(last_id)
        )
        if run.is_finished and seen_all:
            # Resumed after the end with nothing missed: 204 is how the EventSource
            # spec tells a client to stop reconnecting.
            return HttpResponse(status=204)
        if newest is None or parse_id(newest) < parse_id(last_id):
            last_id = None  # an id this log never gave: start over from the snapshot
            # An empty log (Redis restarted empty): what lands in it from now on, even
            # before the snapshot is read, is news to this client.
            from_start = newest is None

    async def read_snapshot() -> list[Any]:
        # At one instant: the record and the id of its stream's last event (one slot,
        # so a script works on a Redis Cluster too, where redis-py's MULTI may not).
        client = get_async_redis()
        flat, tail = await client.eval(_SNAPSHOT, 2, keys.run_hash(run_id), stream)
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return [raw, [(tail, {})] if tail else []]

    async def opening() -> tuple[list[bytes], str | None, bool]:
        snapshot, last = run, "0-0"
        try:
            # A burst of openers of one run shares one read (one pooled connection).
            raw, tail = await shared_reads().read(stream, read_snapshot)
            if raw:
                snapshot = Run(**fields_from_hash(decode_hash(raw)))
            if tail:
                last = tail[0][0].decode()
        except redis.RedisError:
            pass  # the database's view, then the stream ends and the client retries
        if last == "0-0" and snapshot.is_finished:
            last = END_ID  # the log has expired: this snapshot is the last word
        elif from_start and not snapshot.is_finished:
            last = "0-0"
        body = json.dumps({"kind": "state", **_run_json(snapshot, request)}, separators=(",", ":"))
        frame = f"id: {last}\nevent: state\ndata: {body}\n\n".encode()
        return [frame], last, snapshot.is_finished

    return sse_response(
        event_stream(
            stream=stream,
            channel=keys.channel(stream),
            last_id=last_id,
            opening=opening,
            keepalive=float(settings.KEEPALIVE_INTERVAL),
            over=run.is_finished,
            server=server_send(request),
        )
    )


@allow("GET")
async def subject_events(request: HttpRequest, subject: str) -> HttpResponseBase:
    """Events of every run about one subject (``crawl:<uuid>``) that the user may see."""
    if has_control_character(subject):
        return error(400, "A subject holds no control characters.")
    try:
        label = subject_label(subject)
    except ValueError as exc:
        return error(400, str(exc))
    user = await authenticate(request)
    if isinstance(user, HttpResponseBase):
        return user
    if not getattr(user, "is_authenticated", False):
        return error(404, "No such subject.")
    last_id = _last_event_id(request)
    if isinstance(last_id, HttpResponseBase):
        return last_id
    if (down := await _redis_down()) is not None:
        return down
    stream = keys.subject_stream(label)

    def visible(frame: Frame) -> bool:
        return can_view_event(user, frame.owner)

    async def opening() -> tuple[list[bytes], str | None, bool]:
        frames = await read_tail(stream, SUBJECT_REPLAY)
        last = frames[-1].id if frames else "0-0"
        return [f.sse for f in frames if visible(f)], last, False

    return sse_response(
        event_stream(
            stream=stream,
            channel=keys.channel(stream),
            last_id=last_id,
            opening=opening,
            visible=visible,
            stops=lambda frame: False,
            keepalive=float(settings.KEEPALIVE_INTERVAL),
            server=server_send(request),
        )
    )


def _list_page(user: Any, params: dict[str, str]) -> tuple[list[TaskRun], str | None]:
    queryset = TaskRun.objects.all()
    if not is_staff(user):
        queryset = queryset.filter(owner_id=user.pk)
    if params.get("status"):
        queryset = queryset.filter(status=params["status"])
    if params.get("task"):
        queryset = queryset.filter(task=params["task"])
    if params.get("subject"):
        queryset = queryset.filter(subject=params["subject"])
    return page(queryset, params.get("cursor"), int(params["limit"]))


def _list_params(request: HttpRequest) -> dict[str, str] | HttpResponseBase:
    """The list's query, checked against docs/openapi.yaml before anyone is looked up,
    so an anonymous caller meets the same rules as a signed-in one."""
    params = {k: request.GET[k] for k in ("task", "subject", "cursor") if request.GET.get(k)}
    if "status" in request.GET:  # an empty status is not one of the enum either
        params["status"] = request.GET["status"]
        if params["status"] not in Status.values:
            return error(400, f"Unknown status; use one of {', '.join(Status.values)}.")
    limit = request.GET.get("limit", str(settings.LIST_PAGE_SIZE))
    # Three digits at most: int() of thousands of digits is itself an error.
    if not (limit.isascii() and limit.isdecimal() and len(limit) <= 3) or not (
        1 <= int(limit) <= MAX_PAGE
    ):
        return error(400, f"limit must be a whole number from 1 to {MAX_PAGE}.")
    params["limit"] = limit
    if params.get("cursor"):
        try:
            decode_cursor(params["cursor"])
        except BadCursor as exc:
            return error(400, str(exc))
    return params


@allow("GET", "HEAD")
async def run_list(request: HttpRequest) -> HttpResponseBase:
    """Runs the user may see, newest first; filters ``status``, ``task``, ``subject``."""
    params = _list_params(request)
    if isinstance(params, HttpResponseBase):
        return params
    user = await authenticate(request)
    if isinstance(user, HttpResponseBase):
        return user
    if not getattr(user, "is_authenticated", False):
        return JsonResponse({"results": [], "next": None})
    rows, cursor = await sync_to_async(_list_page)(user, params)
    results = [_run_json(Run(**fields_from_model(row)), request) for row in rows]
    following = None
    if cursor:
        query = request.GET.copy()
        query["cursor"] = cursor
        following = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return JsonResponse({"results": results, "next": following})


async def _actionable(request: HttpRequest, run_id: str) -> tuple[Run, Any] | HttpResponseBase:
    user = await authenticate(request, acting=True)
    if isinstance(user, HttpResponseBase):
        return user
    if not _valid_id(run_id):
        return error(400, MALFORMED_ID)
    run = await afind_run(run_id)
    if run is None or not can_view(user, run, _token(request)):
        return not_found()
    if not can_act(user, run):
        return error(403, "Only the run's owner or staff may do this.")
    return run, user


@allow("POST")  # CSRF is checked inside (authenticate), so that a failure is JSON
async def run_cancel(request: HttpRequest, run_id: str) -> HttpResponseBase:
    """Cancel: a waiting run never starts; a running one is asked to stop
    (``?terminate=1`` also kills its process)."""
    terminate = request.GET.get("terminate")
    if terminate is not None and terminate not in TERMINATE:
        return error(400, f"terminate must be one of {', '.join(TERMINATE)}, or absent.")
    found = await _actionable(request, run_id)
    if isinstance(found, HttpResponseBase):
        return found
    run, user = found
    try:
        after = await sync_to_async(actions.cancel)(
            run.id,
            actor=user,
            address=request.META.get("REMOTE_ADDR"),
            terminate=terminate is not None,
        )
    except actions.ActionRefused as exc:
        return error(409, str(exc), run_status=run.status.value)
    return JsonResponse(_run_json(after, request))


@allow("POST")  # CSRF is checked inside (authenticate), so that a failure is JSON
async def run_retry(request: HttpRequest, run_id: str) -> HttpResponseBase:
    """Retry a failed or cancelled run with its original arguments, as a new run."""
    found = await _actionable(request, run_id)
    if isinstance(found, HttpResponseBase):
        return found
    run, user = found
    try:
        new = await sync_to_async(actions.retry)(
            run.id, actor=user, address=request.META.get("REMOTE_ADDR")
        )
    except actions.ActionRefused as exc:
        return error(409, str(exc), run_status=run.status.value)
    return accepted(new, request, retry_of=run.id)


@csrf_exempt  # any method: the answer is this JSON 404, never Django's HTML 403
@json_errors
async def not_found_view(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    return error(404, "No such endpoint.")
