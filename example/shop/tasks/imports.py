"""Seeds 003 and 004: ``chain(process_import, send_notification)`` over a real CSV file.

The view calls ``enqueue(chain(process_import.s(job), send_notification.s(user_id=...)),
owner=..., subject=job.subject)``: ``send_notification`` receives the import's result
as its first argument, and its run inherits owner and subject from its parent, so the
import's page sees the whole chain on ``import:<id>``.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from tasktrail import feed, progress, tracked_task

from ..models import ImportJob, Product

COLUMNS = ("sku", "name", "price", "stock", "threshold")


class BadRow(ValueError):
    pass


def _parse(row: dict[str, str]) -> dict[str, Any]:
    sku = (row.get("sku") or "").strip()
    if not sku or len(sku) > 32:
        raise BadRow("missing or too long sku")
    try:
        return {
            "sku": sku,
            "name": (row.get("name") or sku).strip()[:200],
            "price": Decimal(row.get("price") or "0"),
            "stock": int(row.get("stock") or 0),
            "threshold": int(row.get("threshold") or 5),
        }
    except (InvalidOperation, ValueError) as exc:
        raise BadRow(str(exc) or "bad number") from None


@tracked_task(bind=True, max_retries=3, retry_backoff=1)
def process_import(self: Any, import_id: int) -> dict[str, Any]:
    """Upsert the products of an uploaded CSV; bad rows are reported and skipped."""
    job = ImportJob.objects.get(pk=import_id)
    with job.file.open("rb") as handle:
        text = handle.read().decode("utf-8-sig", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    missing = [c for c in COLUMNS[:2] if c not in (rows[0].keys() if rows else ())]
    if missing:
        feed(f"CSV lacks the column(s) {', '.join(missing)}", "error")
        raise ValueError(f"CSV must have the columns {', '.join(COLUMNS)}")
    feed(f"Importing {len(rows)} rows")
    imported = rejected = 0
    for number, row in enumerate(rows, start=2):
        try:
            values = _parse(row)
        except BadRow as exc:
            rejected += 1
            feed(f"Line {number}: {exc}; skipped", "warning")
            continue
        with transaction.atomic():
            Product.objects.update_or_create(sku=values.pop("sku"), defaults=values)
        imported += 1
        progress(number - 1, len(rows), f"Line {number}")
    ImportJob.objects.filter(pk=job.pk).update(rows_imported=imported, rows_rejected=rejected)
    progress(len(rows), max(len(rows), 1), "Import finished")
    feed(f"Imported {imported} products, rejected {rejected} rows", "success")
    return {"import": job.pk, "imported": imported, "rejected": rejected}


@tracked_task
def send_notification(result: dict[str, Any], user_id: int) -> str:
    """Tell the user their import is done (the second link of the chain)."""
    user = get_user_model().objects.get(pk=user_id)
    recipient = user.email or f"{user.get_username()}@shop.example"
    send_mail(
        subject=f"Import {result['import']} finished",
        message=f"{result['imported']} products imported, {result['rejected']} rows rejected.",
        from_email=None,
        recipient_list=[recipient],
    )
    ImportJob.objects.filter(pk=result["import"]).update(notified_at=timezone.now())
    feed(f"Notified {recipient}", "success")
    return f"Notified {recipient}"
