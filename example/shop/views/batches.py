"""The chunked batch (seed 002): 1,000 products in chunks of 100 as a Celery group.

``POST /api/batches/`` enqueues ``group(revalue_chunk.s(...) for chunk in chunks)``
with ``tasktrail.enqueue`` and answers 202 with the batch's status URL and its subject
stream; ``GET /api/batches/<uuid>/`` is the batch's status, shaped like a run's
(``status``, ``progress``, ``result``/``error``), computed from the group's member
runs: overall progress is finished chunks / chunks.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from celery import group
from django import forms
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from tasktrail import Status, enqueue
from tasktrail.canvas import RunGroup

from ..models import Batch, Product
from ..tasks.batch import chunked, revalue_chunk
from .api import api, error, validated

FINISHED = {Status.SUCCESSFUL, Status.FAILED, Status.CANCELLED}


class BatchForm(forms.Form):
    size = forms.IntegerField(min_value=1, max_value=10_000, required=False)
    chunk_size = forms.IntegerField(min_value=1, max_value=1_000, required=False)


def _urls(request: HttpRequest, batch: Batch) -> dict[str, str]:
    return {
        "status_url": request.build_absolute_uri(reverse("shop:api-batch", args=[batch.uuid])),
        "events_url": request.build_absolute_uri(
            reverse("tasktrail:subject-events", args=[batch.subject])
        ),
    }


def _batch_json(request: HttpRequest, batch: Batch) -> dict[str, object]:
    """The batch as a run-like status: the group's members decide it."""
    members = RunGroup(id=batch.group_id, run_ids=tuple(batch.run_ids)).runs()
    statuses = [run.status if run is not None else Status.READY for run in members]
    total = len(statuses)
    done = sum(1 for s in statuses if s in FINISHED)
    failed = sum(1 for s in statuses if s in FINISHED and s != Status.SUCCESSFUL)
    if total and done == total:
        status = Status.FAILED if failed else Status.SUCCESSFUL
    elif done or any(s not in (Status.READY,) for s in statuses):
        status = Status.RUNNING
    else:
        status = Status.READY
    body: dict[str, object] = {
        "id": str(batch.uuid),
        "uuid": str(batch.uuid),
        "subject": batch.subject,
        "status": status.value,
        "progress": {
            "current": done,
            "total": total,
            "percent": round(100 * done / total, 1) if total else None,
            "message": f"{done} of {total} chunks done",
        },
        "size": batch.size,
        "chunk_size": batch.chunk_size,
        "processed": batch.processed,
        "group_id": batch.group_id,
        "run_ids": list(batch.run_ids),
        "chunks": [
            {"run": run_id, "status": s.value}
            for run_id, s in zip(batch.run_ids, statuses, strict=True)
        ],
        **_urls(request, batch),
    }
    if status == Status.SUCCESSFUL:
        value = sum((Decimal(run.result["value"]) for run in members if run), Decimal(0))
        body["result"] = {"products": batch.processed, "chunks": total, "value": str(value)}
    elif status == Status.FAILED:
        body["error"] = {"type": "BatchFailed", "message": f"{failed} of {total} chunks failed"}
    return body


@api("POST")
def start(request: HttpRequest) -> HttpResponse:
    form = validated(BatchForm, request)
    if isinstance(form, JsonResponse):
        return form
    size = form.cleaned_data.get("size") or 1000
    available = Product.objects.count()
    if available < size:
        return error(409, f"Only {available} products exist; a batch of {size} needs more.")
    with transaction.atomic():
        batch = Batch.objects.create(
            owner=request.user, size=size, chunk_size=form.cleaned_data.get("chunk_size") or 100
        )
        ids = list(Product.objects.order_by("pk").values_list("pk", flat=True)[:size])
        chunks = chunked(ids, batch.chunk_size)
        # One call: every chunk is a tracked run of the group, owned by the user and
        # about batch:<uuid>; published when this transaction commits.
        runs = enqueue(
            group(revalue_chunk.s(batch.pk, n, chunk) for n, chunk in enumerate(chunks, 1)),
            owner=request.user,
            subject=batch.subject,
        )
        batch.group_id, batch.run_ids = runs.id, list(runs.run_ids)
        batch.save(update_fields=["group_id", "run_ids"])
    urls = _urls(request, batch)
    response = JsonResponse(
        {
            "id": str(batch.uuid),
            "status": Status.READY.value,
            **urls,
            "batch": _batch_json(request, batch),
        },
        status=202,
    )
    response["Location"] = urls["status_url"]
    return response


@api("GET")
def detail(request: HttpRequest, batch_uuid: uuid.UUID) -> HttpResponse:
    batch = Batch.objects.filter(uuid=batch_uuid, owner=request.user).first()
    if batch is None:
        return error(404, "No such batch.")
    return JsonResponse(_batch_json(request, batch))


@login_required
def page(request: HttpRequest) -> HttpResponse:
    batches = Batch.objects.filter(owner=request.user).order_by("-pk")[:10]
    return render(
        request,
        "shop/batches.html",
        {"batches": batches, "products": Product.objects.count()},
    )
