"""JSON answers for errors Django would otherwise render as HTML."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as html_csrf_failure


def _wants_json(request: HttpRequest) -> bool:
    return not request.path.startswith(("/accounts/",)) and (
        request.path.startswith(("/api/", "/webhooks/", "/tasks/"))
        or "application/json" in request.headers.get("Accept", "")
        or request.content_type == "application/json"
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            {
                "error": f"CSRF check failed: {reason}. Send the csrftoken cookie's value "
                "in the X-CSRFToken header."
            },
            status=403,
        )
    return html_csrf_failure(request, reason)


def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": "Not found."}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": "Server error."}, status=500)
    from django.views.defaults import server_error as html_server_error

    return html_server_error(request)
