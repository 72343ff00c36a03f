"""The alerts screen: the configured rules, their channels, the latest deliveries.

Read-only on purpose: rules live in settings (reviewed like code), and a delivery is
retried by the evaluator, not by hand.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse

from tasktrail.alerts.models import AlertDelivery
from tasktrail.alerts.validation import parse
from tasktrail.conf import settings

from .access import can_change, staff_required

RECENT = 50


@staff_required
def alerts(request: HttpRequest) -> HttpResponseBase:
    config, problems = parse(settings.ALERTS)
    recent = list(AlertDelivery.objects.order_by("-claimed_at", "-id")[:RECENT])
    context = {
        "section": "alerts",
        "can_change": can_change(request.user),
        "rules": config.rules,
        "channels": sorted(config.channels.values(), key=lambda c: c.name),
        "problems": problems,
        "interval": config.interval,
        "deliveries": recent,
    }
    return TemplateResponse(request, "tasktrail/dashboard/alerts.html", context)
