"""The import chain (seeds 003, 004): ``process_import`` then ``send_notification``."""

from __future__ import annotations

from pathlib import Path

from celery import chain
from django import forms
from django.contrib.auth.decorators import login_required
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from tasktrail import accepted, enqueue

from ..models import ImportJob
from ..tasks.imports import process_import, send_notification
from .api import api, error, validated

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "products.csv"
MAX_BYTES = 1_000_000


class ImportForm(forms.Form):
    file = forms.FileField(required=False, help_text="CSV: sku,name,price,stock,threshold")

    def clean_file(self) -> object:
        upload = self.cleaned_data.get("file")
        if upload is not None and upload.size > MAX_BYTES:
            raise forms.ValidationError("The file is larger than 1 MB.")
        return upload


def _import_json(request: HttpRequest, job: ImportJob) -> dict[str, object]:
    return {
        "id": job.pk,
        "subject": job.subject,
        "rows_imported": job.rows_imported,
        "rows_rejected": job.rows_rejected,
        "notified_at": job.notified_at,
        "subject_events_url": request.build_absolute_uri(
            reverse("tasktrail:subject-events", args=[job.subject])
        ),
    }


@api("POST")
def start(request: HttpRequest) -> HttpResponse:
    """Import the uploaded CSV (or the bundled sample when no file is sent)."""
    form = validated(ImportForm, request)
    if isinstance(form, JsonResponse):
        return form
    upload = form.cleaned_data.get("file")
    content = upload.read() if upload is not None else SAMPLE.read_bytes()
    name = upload.name if upload is not None else SAMPLE.name
    with transaction.atomic():
        job = ImportJob(owner=request.user)
        job.file.save(Path(name).name, ContentFile(content), save=False)
        job.save()
        # The handle is the chain's first run; send_notification follows it as its child.
        run = enqueue(
            chain(process_import.s(job.pk), send_notification.s(user_id=request.user.pk)),
            owner=request.user,
            subject=job.subject,
        )
        return accepted(run, request, import_job=_import_json(request, job))


@api("GET")
def detail(request: HttpRequest, import_id: int) -> HttpResponse:
    job = ImportJob.objects.filter(pk=import_id, owner=request.user).first()
    if job is None:
        return error(404, "No such import.")
    return JsonResponse(_import_json(request, job))


@login_required
def page(request: HttpRequest) -> HttpResponse:
    jobs = ImportJob.objects.filter(owner=request.user).order_by("-pk")[:10]
    return render(request, "shop/imports.html", {"jobs": jobs, "sample": SAMPLE.name})
