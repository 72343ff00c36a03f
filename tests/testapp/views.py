"""A view of the kind existing projects have: a plain ``delay()``, no tasktrail call."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from tasktrail import owned_by
from tests.testapp.tasks import add


def start_with_delay(request: HttpRequest) -> JsonResponse:
    queue = request.GET.get("queue") or None
    subject = request.GET.get("subject")
    if subject:
        with owned_by(subject=subject):  # names the subject; the owner stays the user's
            result = add.apply_async((1, 2), queue=queue)
    else:
        result = add.apply_async((1, 2), queue=queue)
    return JsonResponse({"id": result.id}, status=202)


class ReportViewSet(ViewSet):
    """A DRF viewset as the seeds write them: plain ``apply_async(task_id=...)``."""

    def create(self, request: Request) -> Response:
        report_id = str(uuid.uuid4())
        add.apply_async((2, 3), task_id=report_id, queue=request.query_params.get("queue"))
        return Response({"id": report_id}, status=202)
