"""Seeds 002 and 004: the beat-scheduled jobs (cleanup, low-stock alerts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from tasktrail import feed, progress, tracked_task

from ..models import Product, Todo

KEEP_COMPLETED_DAYS = 90


@tracked_task
def cleanup_old_todos() -> int:
    """Delete completed to-dos older than 90 days (daily at 03:00)."""
    cutoff = timezone.now() - timedelta(days=KEEP_COMPLETED_DAYS)
    deleted, _ = Todo.objects.filter(status=Todo.State.COMPLETED, completed_at__lt=cutoff).delete()
    feed(f"Deleted {deleted} completed to-dos older than {KEEP_COMPLETED_DAYS} days", "success")
    return deleted


@tracked_task
def send_low_stock_alert(product_ids: list[int] | None = None) -> dict[str, Any]:
    """E-mail the products whose stock fell below their threshold (every six hours)."""
    products = Product.objects.filter(stock__lt=F("threshold")).order_by("sku")
    if product_ids is not None:
        products = products.filter(pk__in=product_ids)
    low = list(products.values_list("sku", "name", "stock", "threshold")[:500])
    progress(1, 1, f"{len(low)} products low on stock")
    if not low:
        feed("No product is low on stock")
        return {"products": 0, "sent": False}
    lines = [
        f"{sku} {name}: {stock} left (threshold {threshold})" for sku, name, stock, threshold in low
    ]
    send_mail(
        subject=f"Low stock: {len(low)} products",
        message="\n".join(lines),
        from_email=None,
        recipient_list=list(settings.STOCK_ALERT_RECIPIENTS),
    )
    feed(f"Low-stock alert sent for {len(low)} products", "warning")
    return {"products": len(low), "sent": True}
