"""HTTP helpers: the API's one JSON error path, method and query guards, the run's URLs
and the 202 response."""

from __future__ import annotations

import functools
import logging
import time
import unicodedata
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import redis
from django.core.exceptions import SuspiciousOperation
from django.db import InterfaceError, OperationalError, transaction
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from .connection import PoolExhausted, get_async_redis
from .records import RunData

logger = logging.getLogger("tasktrail")

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]

MAX_QUERY_VALUE = 1024  # longer than any id (255), cursor (400) or token (512)
RETRY_AFTER = 5  # seconds a client waits before asking again during an outage


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def not_found() -> JsonResponse:
    return error(404, "No run with this id.")


def unavailable(what: str) -> JsonResponse:
    """503 with ``Retry-After``: a dependency is down, the request itself was fine."""
    response = error(503, f"{what} is unreachable; try again in a few seconds.")
    response["Retry-After"] = str(RETRY_AFTER)
    return response


_redis_seen_at = 0.0  # when this process last heard Redis answer a ping


async def redis_is_down() -> bool:
    """True when Redis does not answer: a stream answers 503 before its first byte
    instead of a 200 that breaks off. One ping a second at most per process (a burst of
    openers does not queue a ping each), and a pool that stays busy under load
    (:class:`~tasktrail.connection.PoolExhausted`) is not an outage."""
    global _redis_seen_at
    if time.monotonic() - _redis_seen_at < 1.0:
        return False
    try:
        await get_async_redis().ping()
    except PoolExhausted:
        return False
    except redis.RedisError:
        return True
    _redis_seen_at = time.monotonic()
    return False


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def query_problem(request: HttpRequest) -> str | None:
    """What no endpoint can take in the query string (a control character such as NUL,
    which PostgreSQL refuses outright, or a value longer than any real one), or None."""
    for name, values in request.GET.lists():
        if has_control_character(name):
            return "A query parameter name holds a control character."
        for value in values:
            if has_control_character(value):
                return f"The query parameter {name!r} holds a control character."
            if len(value) > MAX_QUERY_VALUE:
                return f"The query parameter {name!r} is longer than {MAX_QUERY_VALUE} characters."
    return None


def json_errors(view: View) -> View:
    """Whatever escapes an API view is answered in JSON: an outage of Redis or of the
    database is a 503 with ``Retry-After``, a request Django finds suspicious a 400,
    anything else a logged 500 (a bug, with its traceback in the log)."""

    @functools.wraps(view)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return await view(request, *args, **kwargs)
        except PoolExhausted as exc:
            logger.warning("tasktrail: Redis pool exhausted during %s: %s", request.path, exc)
            return unavailable("A Redis connection of this busy server")
        except redis.RedisError as exc:
            logger.warning("tasktrail: Redis unreachable during %s: %s", request.path, exc)
            return unavailable("The event store (Redis)")
        except (OperationalError, InterfaceError) as exc:
            logger.warning("tasktrail: database unreachable during %s: %s", request.path, exc)
            return unavailable("The database")
        except SuspiciousOperation as exc:
            return error(400, str(exc) or "Bad request.")
        except Exception:
            logger.exception("tasktrail: %s %s failed", request.method, request.path)
            return error(500, "Internal error; it has been logged.")

    return guarded


def allow(*methods: str) -> Callable[[View], View]:
    """An API view: a JSON 405 with ``Allow`` for other methods (before Django's CSRF
    check, which would answer in HTML: views that act check CSRF themselves), a JSON
    400 for an unusable query string, and :func:`json_errors` around the rest."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = error(
                    405, f"Method {request.method} not allowed; use {', '.join(methods)}."
                )
                response["Allow"] = ", ".join(methods)
                return response
            if (problem := query_problem(request)) is not None:
                return error(400, problem)
            return await view(request, *args, **kwargs)

        # ATOMIC_REQUESTS cannot wrap an async view (Django answers an HTML 500): each
        # write of the API is its own transaction, so opt out of it.
        exempt: View = transaction.non_atomic_requests(csrf_exempt(json_errors(guarded)))
        return exempt

    return decorate


def run_urls(
    run_id: str, request: HttpRequest | None = None, token: str | None = None
) -> dict[str, str]:
    status_url = reverse("tasktrail:run-detail", args=[run_id])
    events_url = reverse("tasktrail:run-events", args=[run_id])
    if token:
        query = "?" + urlencode({"token": token})  # a caller's token is never raw text
        status_url += query
        events_url += query
    if request is not None:
        status_url = request.build_absolute_uri(status_url)
        events_url = request.build_absolute_uri(events_url)
    return {"status_url": status_url, "events_url": events_url}


def accepted(
    run: RunData, request: Any = None, *, with_token: bool = False, **extra: Any
) -> HttpResponseBase:
    """``202 Accepted`` for a just-enqueued run: ``Location``, ``id``, ``status`` and URLs.

    ``with_token=True`` puts a signed read token into the URLs, for clients without a
    session (a mobile app, a script). ``extra`` keys are added to the body. Inside a
    Django REST framework view (``request`` is DRF's) it is DRF's ``Response``, so
    content negotiation and the browsable API apply.
    """
    token = None
    if with_token:
        from .access import make_token

        token = make_token(run.id)
    urls = run_urls(run.id, request, token)
    body = {"id": run.id, "status": run.status.value, **urls, **extra}
    if hasattr(request, "accepted_renderer") or hasattr(request, "query_params"):
        from .contrib.rest_framework.responses import accepted_response

        drf_response: HttpResponseBase = accepted_response(body, urls["status_url"])
        return drf_response
    response = JsonResponse(body, status=202)
    response["Location"] = urls["status_url"]
    return response
