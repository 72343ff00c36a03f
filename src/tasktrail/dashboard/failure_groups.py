"""The failure groups screens: failed runs grouped by fingerprint, one group's runs, and
the group actions (retry all, mute, unmute: POST, CSRF, change permission, audited)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from tasktrail import failure_groups
from tasktrail.conf import settings
from tasktrail.models import FailureGroup
from tasktrail.pagination import BadCursor, page

from . import charts
from .access import can_change, change_required, staff_required

logger = logging.getLogger("tasktrail")
GROUP = "tasktrail-dashboard:failure-group"


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> TemplateResponse:
    context = {"section": "failures", "can_change": can_change(request.user), **context}
    return TemplateResponse(request, f"tasktrail/dashboard/{template}", context, status=status)


def _found(fingerprint: str) -> FailureGroup:
    found = failure_groups.group(fingerprint)
    if found is None:
        raise Http404("No failed run has this fingerprint.")
    return found


def _spark(summary: failure_groups.GroupSummary) -> charts.Sparkline:
    text = f"{sum(summary.hourly)} failures in the last {failure_groups.SPARK_HOURS} hours"
    return charts.sparkline(summary.hourly, text)


@staff_required
def groups(request: HttpRequest) -> HttpResponseBase:
    """``?muted=1`` lists muted groups too."""
    show_muted = request.GET.get("muted") == "1"
    found = failure_groups.summaries(timezone.now(), include_muted=show_muted)
    rows = [{"summary": s, "group": s.group, "spark": _spark(s)} for s in found]
    context = {
        "rows": rows,
        "show_muted": show_muted,
        "window_days": failure_groups.WINDOW.days,
        "limit": failure_groups.GROUP_LIMIT,
    }
    return _render(request, "failure_groups.html", context)


@staff_required
def group_detail(request: HttpRequest, fingerprint: str) -> HttpResponseBase:
    found = _found(fingerprint)
    runs = failure_groups.failed_runs(found.pk)
    try:
        listed, following = page(
            runs, request.GET.get("cursor") or None, int(settings.LIST_PAGE_SIZE)
        )
    except BadCursor as exc:
        return _render(request, "failure_group.html", {"group": found, "error": str(exc)}, 400)
    context = {
        "group": found,
        "runs": listed,
        "next_cursor": following,
        "params": {},
    }
    return _render(request, "failure_group.html", context)


def _address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


@change_required
def retry_group(request: HttpRequest, fingerprint: str) -> HttpResponseBase:
    found = _found(fingerprint)
    done = failure_groups.retry_group(found, actor=request.user, address=_address(request))
    outcome = done.outcome
    text = f"Retried {len(outcome.done)} runs of this group"
    if done.not_replayable:
        text += (
            f"; {len(done.not_replayable)} cannot be retried (arguments redacted or cut: "
            "enqueue them again from your code)"
        )
    if refused := done.other_refusals:
        first_id, reason = next(iter(refused.items()))
        text += f"; {len(refused)} refused ({first_id}: {reason})"
    if outcome.skipped_already_retried:
        text += f"; {outcome.skipped_already_retried} skipped (already retried)"
    logger.info("tasktrail: %s retried failure group %s", request.user, found.pk)
    if outcome.stopped:
        messages.error(request, f"{text}; then stopped: {outcome.stopped}")
    else:
        (messages.warning if done.other_refusals else messages.success)(request, text + ".")
    return redirect(GROUP, fingerprint=found.pk)


@change_required
def mute_group(request: HttpRequest, fingerprint: str) -> HttpResponseBase:
    found = _found(fingerprint)
    muting = request.POST.get("muted") == "1"
    failure_groups.set_muted(found, muting, actor=request.user, address=_address(request))
    verb = "muted: hidden from the groups page" if muting else "unmuted"
    messages.success(request, f"Group {found.error_type} in {found.task} {verb}.")
    return redirect(GROUP, fingerprint=found.pk)
