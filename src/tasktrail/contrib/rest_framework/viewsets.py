"""``RunActionsMixin``: a model viewset gets the seeds' "process it in the background"
endpoints in a few lines::

    class DocumentViewSet(RunActionsMixin, viewsets.ModelViewSet):
        queryset = Document.objects.all()
        serializer_class = DocumentSerializer
        run_task = process_document          # POST documents/<pk>/process/ -> 202

- ``POST <pk>/process/``: enqueues ``run_task`` for the object (its pk by default, see
  :meth:`~RunActionsMixin.get_run_arguments`), owned by the requesting user, with the
  object as subject; answers ``202 Accepted`` with ``Location`` and the run's URLs.
- ``GET <pk>/runs/``: the object's runs the user may see, newest first.
- ``POST <pk>/runs/<run_id>/cancel/``: cancels one of them (owner or staff; audited).
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from ... import actions
from ...access import can_act, can_view
from ...enqueueing import enqueue
from ...http import accepted
from ...ownership import subject_label
from ...records import fields_from_model
from ...runs import Run, find_run
from .serializers import RunSerializer

RUNS_SHOWN = 50


class RunActionsMixin:
    """Add to a ``GenericViewSet`` (``ModelViewSet``) whose objects runs work on.

    The actions take the object's lookup as keywords (``pk``, or the viewset's
    ``lookup_url_kwarg``/``lookup_field``) and find it with ``get_object()``."""

    run_task: Any = None

    def get_run_arguments(self, obj: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments of ``run_task`` for ``obj``: ``(obj.pk,)``."""
        return (obj.pk,), {}

    def get_run_options(self, obj: Any) -> dict[str, Any]:
        """Celery options of the run (``queue``, ``countdown``, ...)."""
        return {}

    def get_run_subject(self, obj: Any) -> Any:
        """The subject runs on ``obj`` carry: the object itself (``"app.model:pk"``), or
        a channel label such as ``"crawl:<uuid>"`` if the project's tasks publish there."""
        return obj

    @action(detail=True, methods=["post"])  # type: ignore[untyped-decorator]
    def process(self, request: Any, **lookup: Any) -> Any:
        if self.run_task is None:
            raise NotImplementedError(f"{type(self).__name__}.run_task names no Celery task.")
        obj = self.get_object()  # type: ignore[attr-defined]
        args, kwargs = self.get_run_arguments(obj)
        owner = request.user if getattr(request.user, "is_authenticated", False) else None
        run = enqueue(
            self.run_task, *args, kwargs=kwargs, owner=owner, subject=self.get_run_subject(obj),
            **self.get_run_options(obj),
        )  # fmt: skip
        return accepted(run, request)

    @action(detail=True, methods=["get"])  # type: ignore[untyped-decorator]
    def runs(self, request: Any, **lookup: Any) -> Response:
        from ...models import TaskRun

        obj = self.get_object()  # type: ignore[attr-defined]
        subject = subject_label(self.get_run_subject(obj))
        rows = TaskRun.objects.filter(subject=subject).order_by("-enqueued_at", "-id")
        if not getattr(request.user, "is_staff", False):
            rows = rows.filter(owner_id=getattr(request.user, "pk", None))
        found = [Run(**fields_from_model(row)) for row in rows[:RUNS_SHOWN]]
        data = RunSerializer(found, many=True, context={"request": request}).data
        return Response(data)

    @action(detail=True, methods=["post"], url_path=r"runs/(?P<run_id>[^/]+)/cancel")  # type: ignore[untyped-decorator]
    def cancel_run(self, request: Any, run_id: str = "", **lookup: Any) -> Response:
        obj = self.get_object()  # type: ignore[attr-defined]
        run = find_run(run_id)
        subject = subject_label(self.get_run_subject(obj))
        if run is None or run.subject != subject or not can_view(request.user, run):
            raise NotFound("No run with this id.")
        if not can_act(request.user, run):
            raise PermissionDenied("Only the run's owner or staff may do this.")
        try:
            after = actions.cancel(
                run.id, actor=request.user, address=request.META.get("REMOTE_ADDR")
            )
        except actions.ActionRefused as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(RunSerializer(after, context={"request": request}).data)


__all__ = ["RunActionsMixin"]
