"""Sales reports (seed 002, pattern 2): 202 + poll or stream, then an owner-only download."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from tasktrail import accepted, enqueue

from ..models import Report
from ..tasks.reports import generate_sales_report
from .api import api, error, validated


class ReportForm(forms.Form):
    start_date = forms.DateField()
    end_date = forms.DateField()
    format = forms.ChoiceField(choices=Report.Format.choices)

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start_date"), cleaned.get("end_date")
        if start and end and start > end:
            raise forms.ValidationError("start_date must not be after end_date.")
        return cleaned


@api("POST")
def request_report(request: HttpRequest) -> HttpResponse:
    form = validated(ReportForm, request)
    if isinstance(form, JsonResponse):
        return form
    with transaction.atomic():
        report = Report.objects.create(owner=request.user, **form.cleaned_data)
        run = enqueue(generate_sales_report, str(report.pk), owner=request.user, subject=report)
    return accepted(run, request, report=str(report.pk), message="Report generation started")


@api("GET")
def report_detail(request: HttpRequest, report_id: uuid.UUID) -> HttpResponse:
    report = Report.objects.filter(pk=report_id, owner=request.user).first()
    if report is None:
        return error(404, "No such report.")
    return JsonResponse(
        {
            "id": str(report.pk),
            "format": report.format,
            "rows": report.rows,
            "ready": bool(report.file),
            "file_url": f"/reports/{report.pk}/download/" if report.file else None,
        }
    )


@login_required
def download(request: HttpRequest, report_id: uuid.UUID) -> HttpResponse:
    """Only the report's owner may download it; everyone else gets a 404."""
    report = get_object_or_404(Report, pk=report_id, owner=request.user)
    if not report.file:
        raise Http404("The report is not ready yet.")
    return FileResponse(report.file.open("rb"), as_attachment=True, filename=report.file.name)


@login_required
def page(request: HttpRequest) -> HttpResponse:
    reports = Report.objects.filter(owner=request.user).order_by("-created_at")[:10]
    return render(request, "shop/reports.html", {"reports": reports, "formats": Report.Format})
