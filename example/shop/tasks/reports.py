"""Seed 002, pattern 2: a sales report generated in the background, then downloaded."""

from __future__ import annotations

import csv
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.urls import reverse

from tasktrail import feed, progress, tracked_task

from ..models import Report, Sale

HEADER = ["date", "sku", "product", "quantity", "amount"]


def _rows(report: Report) -> list[list[Any]]:
    sales = (
        Sale.objects.filter(sold_at__date__range=(report.start_date, report.end_date))
        .select_related("product")
        .order_by("sold_at", "pk")
    )
    return [
        [s.sold_at.date().isoformat(), s.product.sku, s.product.name, s.quantity, s.amount]
        for s in sales
    ]


def _csv(rows: list[list[Any]]) -> bytes:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for i, row in enumerate(rows, 1):
        writer.writerow(row)
        if i % 100 == 0:
            progress(i, len(rows), f"Writing CSV row {i}")
    return buffer.getvalue().encode()


def _xlsx(rows: list[list[Any]]) -> bytes:
    import io

    from openpyxl import Workbook

    book = Workbook(write_only=True)  # streams rows, however many there are
    sheet = book.create_sheet("Sales")
    sheet.append(HEADER)
    for i, row in enumerate(rows, 1):
        sheet.append([*row[:4], float(row[4])])
        if i % 100 == 0:
            progress(i, len(rows), f"Writing sheet row {i}")
    sheet.append(["total", "", "", sum(r[3] for r in rows), float(sum(r[4] for r in rows))])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@tracked_task
def generate_sales_report(report_id: str) -> dict[str, Any]:
    """Write the report's sales as CSV or XLSX; the result carries its ``file_url``."""
    report = Report.objects.get(pk=report_id)
    feed(f"Collecting sales from {report.start_date} to {report.end_date}")
    rows = _rows(report)
    progress(0, max(len(rows), 1), f"{len(rows)} sales found")
    content = _csv(rows) if report.format == Report.Format.CSV else _xlsx(rows)
    name = f"sales-{report.start_date}-{report.end_date}-{str(report.pk)[:8]}.{report.format}"
    report.file.save(name, ContentFile(content), save=False)
    report.rows = len(rows)
    report.save(update_fields=["file", "rows"])
    total = sum((r[4] for r in rows), Decimal(0))
    progress(len(rows), max(len(rows), 1), "Report ready")
    feed(f"{report.format.upper()} report ready: {len(rows)} sales, {total} total", "success")
    return {
        "file_url": reverse("shop:report-download", args=[report.pk]),
        "format": report.format,
        "rows": len(rows),
        "total_amount": str(total),
    }
