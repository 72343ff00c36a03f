"""The payment webhook (seed 002, pattern 3), built on ``tasktrail.webhooks``.

The provider signs ``"<timestamp>.<body>"`` with HMAC-SHA256 (headers
``X-Signature`` and ``X-Signature-Timestamp``); its ``reference`` is the event id,
so every delivery of one payment is one run, processed once.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from tasktrail import accepted, get_run
from tasktrail.webhooks import HmacSha256, sign, webhook_view

from ..models import Payment
from ..tasks.payments import process_payment_webhook
from .api import api, error, validated

PROVIDER = HmacSha256(
    name="paystack",
    secrets=lambda: [settings.PAYMENT_WEBHOOK_SECRET],
    signature_header="X-Signature",
    timestamp_header="X-Signature-Timestamp",
    event_id_path="reference",
)


def _arguments(payload: dict[str, Any]) -> dict[str, Any]:
    amount = Decimal(str(payload["amount"]))
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a positive number")
    customer = payload.get("customer")
    return {
        "payment_reference": str(payload["reference"]),
        "amount_paid": str(amount),
        "payment_provider": "paystack",
        "customer": str(customer) if customer else None,
    }


def _customer(payload: dict[str, Any]) -> Any:
    name = payload.get("customer")
    return get_user_model().objects.filter(username=str(name)).first() if name else None


payment_webhook = webhook_view(
    process_payment_webhook,
    provider=PROVIDER,
    kwargs=_arguments,
    owner=_customer,
    max_body_bytes=64 * 1024,
)


def signed_delivery(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers the provider sends with ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": stamp,
        "X-Signature": sign(secret, stamp.encode() + b"." + body),
    }


def _deliver(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return {"status": response.status, **json.loads(response.read())}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, **json.loads(exc.read() or b"{}")}


class SimulateForm(forms.Form):
    amount = forms.DecimalField(min_value=Decimal("0.01"), max_digits=10, decimal_places=2)
    deliveries = forms.IntegerField(min_value=1, max_value=20, required=False)


@api("POST")
def simulate(request: HttpRequest) -> HttpResponse:
    """Play the provider: one forged delivery, then N identical signed ones at once."""
    form = validated(SimulateForm, request)
    if isinstance(form, JsonResponse):
        return form
    count = form.cleaned_data.get("deliveries") or 10
    reference = f"PAY-{secrets.token_hex(6).upper()}"
    body = json.dumps(
        {
            "event": "charge.success",
            "reference": reference,
            "amount": str(form.cleaned_data["amount"]),
            "customer": request.user.get_username(),
        }
    ).encode()
    url = request.build_absolute_uri(reverse("shop:payment-webhook"))
    forged = _deliver(url, body, signed_delivery(body, "not-the-secret"))
    headers = signed_delivery(body, settings.PAYMENT_WEBHOOK_SECRET)
    with ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(pool.map(lambda _: _deliver(url, body, headers), range(count)))
    ids = sorted({a.get("id") for a in answers if a.get("id")})
    if len(ids) != 1:
        return error(502, "The deliveries did not resolve to one run.", answers=answers)
    return accepted(
        get_run(ids[0]),
        request,
        reference=reference,
        forged_delivery=forged,
        deliveries=[a["status"] for a in answers],
        distinct_runs=len(ids),
    )


@api("GET")
def payment_detail(request: HttpRequest, reference: str) -> HttpResponse:
    payment = Payment.objects.filter(reference=reference, customer=request.user).first()
    if payment is None:
        return error(404, "No such payment.")
    return JsonResponse(
        {
            "reference": payment.reference,
            "amount": str(payment.amount),
            "times_processed": payment.times_processed,
            "processed_at": payment.processed_at,
        }
    )


@login_required
def page(request: HttpRequest) -> HttpResponse:
    payments = Payment.objects.filter(customer=request.user).order_by("-pk")[:10]
    return render(request, "shop/payments.html", {"payments": payments})
