"""The dashboard's actions: retry or cancel one run, and bulk retry/cancel by filter.

Every action goes through :mod:`tasktrail.actions` (so each run's action is audited
with the operator and their address); bulk actions first show a confirmation page
saying how many runs they will touch.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from tasktrail import actions, operations
from tasktrail.exceptions import RunNotFound

from .access import can_change, change_required, staff_required

BULK_ACTIONS = ("retry", "cancel")


def _address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _back(request: HttpRequest, fallback: str) -> HttpResponseBase:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


@change_required
def retry_run(request: HttpRequest, run_id: str) -> HttpResponseBase:
    try:
        new = actions.retry(run_id, actor=request.user, address=_address(request))
    except (actions.ActionRefused, RunNotFound) as exc:
        messages.error(request, str(exc))
        return _back(request, reverse("tasktrail-dashboard:run", args=[run_id]))
    except actions.UNREACHABLE as exc:
        messages.error(request, actions.unreachable_message(exc))
        return _back(request, reverse("tasktrail-dashboard:run", args=[run_id]))
    messages.success(request, f"Retrying {run_id} as {new.id}.")
    return redirect("tasktrail-dashboard:run", run_id=new.id)


@change_required
def cancel_run(request: HttpRequest, run_id: str) -> HttpResponseBase:
    terminate = request.POST.get("terminate") == "1"
    try:
        after = actions.cancel(
            run_id, actor=request.user, address=_address(request), terminate=terminate
        )
    except (actions.ActionRefused, RunNotFound) as exc:
        messages.error(request, str(exc))
    except actions.UNREACHABLE as exc:
        messages.error(request, actions.unreachable_message(exc))
    else:
        messages.success(request, f"Run {run_id} is {after.status}.")
    return _back(request, reverse("tasktrail-dashboard:run", args=[run_id]))


def _bulk_filter(request: HttpRequest, source: dict[str, str]) -> operations.RunFilter | None:
    try:
        return operations.RunFilter.from_params(source)
    except operations.BadFilter as exc:
        messages.error(request, str(exc))
        return None


@staff_required
def bulk_confirm(request: HttpRequest, action: str) -> HttpResponseBase:
    """GET: how many runs the filter matches now, and a form to go ahead."""
    if action not in BULK_ACTIONS:
        return redirect("tasktrail-dashboard:failures")
    run_filter = _bulk_filter(request, request.GET.dict())
    if run_filter is None:
        return redirect("tasktrail-dashboard:failures")
    verb: operations.BulkAction = "retry" if action == "retry" else "cancel"
    count = operations.bulk_count(run_filter, verb)
    return TemplateResponse(
        request,
        "tasktrail/dashboard/bulk_confirm.html",
        {
            "section": "failures" if action == "retry" else "runs",
            "action": action,
            "filter": run_filter,
            "params": run_filter.as_params(),
            "count": count,
            "limit": operations.BULK_LIMIT,
            "at_limit": count >= operations.BULK_LIMIT,
            "statuses_acted_on": ", ".join(operations.BULK_STATUSES[verb]),
            "can_change": can_change(request.user),
        },
    )


@change_required
def bulk_apply(request: HttpRequest, action: str) -> HttpResponseBase:
    if action not in BULK_ACTIONS:
        return redirect("tasktrail-dashboard:failures")
    run_filter = _bulk_filter(request, request.POST.dict())
    if run_filter is None:
        return redirect("tasktrail-dashboard:failures")
    verb: operations.BulkAction = "retry" if action == "retry" else "cancel"
    outcome = operations.bulk_apply(run_filter, verb, actor=request.user, address=_address(request))
    text = f"{'Retried' if verb == 'retry' else 'Cancelled'} {len(outcome.done)} runs"
    if outcome.refused:
        text += f"; {len(outcome.refused)} refused (they changed meanwhile)"
    if outcome.skipped_already_retried:
        text += f"; {outcome.skipped_already_retried} skipped (already retried)"
    if outcome.stopped:
        messages.error(request, f"{text}; then stopped: {outcome.stopped}")
    else:
        messages.success(request, text + ".")
    target = "failures" if verb == "retry" else "runs"
    params = {k: v for k, v in run_filter.as_params().items() if k != "status"}
    query = f"?{urlencode(params)}" if params else ""
    return redirect(reverse(f"tasktrail-dashboard:{target}") + query)
