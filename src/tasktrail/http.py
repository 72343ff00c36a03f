"""HTTP helpers: JSON errors, method guards, the run's URLs and the 202 response."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import reverse

from .records import RunData

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def not_found() -> JsonResponse:
    return error(404, "No run with this id.")


def allow(*methods: str) -> Callable[[View], View]:
    """Like ``require_http_methods``, but the 405 is JSON like every other error."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = error(
                    405, f"Method {request.method} not allowed; use {', '.join(methods)}."
                )
                response["Allow"] = ", ".join(methods)
                return response
            return await view(request, *args, **kwargs)

        return guarded

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
