"""Seed 002, pattern 3: the payment webhook's processing, exactly once per reference.

The webhook view (``views/webhooks.py``) de-duplicates deliveries by the provider's
reference before anything is enqueued; ``times_processed`` counts what this task
actually did, so a duplicate would be visible.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tasktrail import feed, progress, tracked_task

from ..models import Payment


@tracked_task
def process_payment_webhook(
    payment_reference: str,
    amount_paid: str,
    payment_provider: str,
    customer: str | None = None,
) -> dict[str, Any]:
    """Record the payment and credit the customer."""
    amount = Decimal(amount_paid)
    user = get_user_model().objects.filter(username=customer).first() if customer else None
    feed(f"Payment {payment_reference} from {payment_provider}: {amount}")
    with transaction.atomic():
        payment, created = Payment.objects.get_or_create(
            reference=payment_reference,
            defaults={"provider": payment_provider, "amount": amount, "customer": user},
        )
        Payment.objects.filter(pk=payment.pk).update(
            times_processed=F("times_processed") + 1, processed_at=timezone.now()
        )
    payment.refresh_from_db()
    progress(1, 1, "Payment recorded")
    feed(
        f"Payment {payment_reference} recorded"
        + ("" if created else f" (processed {payment.times_processed} times!)"),
        "success" if created else "error",
    )
    return {
        "reference": payment.reference,
        "amount": str(payment.amount),
        "times_processed": payment.times_processed,
    }
