"""Document processing (seed 001): staged progress, retries with backoff, failure."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from tasktrail import accepted, enqueue

from ..models import Document
from ..tasks.documents import process_document
from .api import api, error, validated

MAX_BYTES = 1_000_000


class DocumentForm(forms.Form):
    title = forms.CharField(max_length=200)
    body = forms.CharField(required=False, max_length=MAX_BYTES)
    file = forms.FileField(required=False)
    flaky_attempts = forms.IntegerField(min_value=0, max_value=9, required=False)
    countdown = forms.FloatField(min_value=0, max_value=3600, required=False)

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        upload = cleaned.get("file")
        if upload is not None:
            if upload.size > MAX_BYTES:
                raise forms.ValidationError("The file is larger than 1 MB.")
            cleaned["body"] = upload.read().decode("utf-8", errors="replace")
        if not cleaned.get("body"):
            raise forms.ValidationError("Send a text body or a text file.")
        return cleaned


class ProcessForm(forms.Form):
    countdown = forms.FloatField(min_value=0, max_value=3600, required=False)


def _document_json(document: Document) -> dict[str, object]:
    return {
        "id": document.pk,
        "title": document.title,
        "status": document.status,
        "error_message": document.error_message,
        "word_count": document.word_count,
        "summary": document.summary,
    }


def _enqueue(request: HttpRequest, document: Document, countdown: float | None) -> HttpResponse:
    options = {"countdown": countdown} if countdown else {}
    run = enqueue(process_document, document.pk, owner=request.user, subject=document, **options)
    return accepted(run, request, document=_document_json(document))


@api("POST")
def upload(request: HttpRequest) -> HttpResponse:
    form = validated(DocumentForm, request)
    if isinstance(form, JsonResponse):
        return form
    with transaction.atomic():
        document = Document.objects.create(
            owner=request.user,
            title=form.cleaned_data["title"],
            body=form.cleaned_data["body"],
            flaky_attempts=form.cleaned_data.get("flaky_attempts") or 0,
        )
        return _enqueue(request, document, form.cleaned_data.get("countdown"))


@api("POST")
def process(request: HttpRequest, document_id: int) -> HttpResponse:
    """Process (again); ``countdown`` delays the start, as Celery's option does."""
    document = Document.objects.filter(pk=document_id, owner=request.user).first()
    if document is None:
        return error(404, "No such document.")
    form = validated(ProcessForm, request)
    if isinstance(form, JsonResponse):
        return form
    Document.objects.filter(pk=document.pk).update(status=Document.State.PENDING)
    return _enqueue(request, document, form.cleaned_data.get("countdown"))


@api("GET", "DELETE")
def detail(request: HttpRequest, document_id: int) -> HttpResponse:
    document = Document.objects.filter(pk=document_id, owner=request.user).first()
    if document is None:
        return error(404, "No such document.")
    if request.method == "DELETE":
        document.delete()
        return HttpResponse(status=204)
    return JsonResponse(_document_json(document))


@login_required
def page(request: HttpRequest) -> HttpResponse:
    documents = Document.objects.filter(owner=request.user).order_by("-created_at")[:10]
    return render(request, "shop/documents.html", {"documents": documents})
