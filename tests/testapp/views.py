"""A view of the kind existing projects have: a plain ``delay()``, no tasktrail call."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from tests.testapp.tasks import add


def start_with_delay(request: HttpRequest) -> JsonResponse:
    result = add.apply_async((1, 2), queue=request.GET.get("queue") or None)
    return JsonResponse({"id": result.id}, status=202)
