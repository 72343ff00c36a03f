"""A view of the kind existing projects have: a plain ``delay()``, no tasktrail call."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ReadOnlyModelViewSet, ViewSet

from tasktrail import owned_by
from tasktrail.contrib.rest_framework.viewsets import RunActionsMixin
from tests.testapp import drf_example
from tests.testapp.models import Document
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


class DocumentByUuidViewSet(RunActionsMixin, ReadOnlyModelViewSet):
    """Looked up by uuid, its runs on a channel subject (as the crawl seed does)."""

    queryset = Document.objects.all()
    serializer_class = drf_example.DocumentSerializer
    lookup_field = "uuid"
    run_task = drf_example.process_document

    def get_run_subject(self, obj: Document) -> str:
        return f"document:{obj.uuid}"
