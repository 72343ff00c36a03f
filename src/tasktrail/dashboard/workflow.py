"""The workflow timeline: a run's family as a Gantt chart of waits, runs and retries.

The page is a frame; its script polls the JSON view every second while any member
is unfinished (a second is the flusher's delay, so polling is as live as the
database side of the record, and the hot records make the rest live).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from tasktrail.family import Family, Member, find_family
from tasktrail.ids import to_segment
from tasktrail.runs import find_run

from .access import can_change, staff_required

MAX_MEMBERS = 2000
_PLACEHOLDER = "__run__"
_SAFE = "!$&'()*+,;=~:@"  # what Django's reverse() leaves unquoted in a path segment


def _bar(member: Member, url: str) -> dict[str, Any]:
    return {
        "id": member.id,
        "task": member.task,
        "status": member.status,
        "attempts": member.attempts,
        "queue": member.queue,
        "worker": member.worker,
        "enqueued": member.enqueued_at,
        "started": member.started_at,
        "attempted": member.last_attempted_at,
        "finished": member.finished_at,
        "next_attempt": member.next_attempt_at,
        "parent": member.parent_id or None,
        "group": member.group_id or None,
        "retry_of": member.retry_of or None,
        "url": url.replace(_PLACEHOLDER, quote(to_segment(member.id), safe=_SAFE)),
    }


def payload(run_id: str, family: Family) -> dict[str, Any]:
    """The JSON the page draws: bars sorted by start, times in epoch seconds."""
    url = reverse("tasktrail-dashboard:run", args=[_PLACEHOLDER])
    return {
        "run": run_id,
        "now": time.time(),
        "total": family.total,
        "shown": len(family.members),
        "finished": all(m.is_finished for m in family.members),
        "note": family.unsaved_note,
        "bars": [_bar(m, url) for m in family.members],
    }


@staff_required
def timeline_page(request: HttpRequest, run_id: str) -> HttpResponseBase:
    run = find_run(run_id)
    if run is None:
        context = {"section": "runs", "error": f"No run {run_id}.", "can_change": False}
        return TemplateResponse(request, "tasktrail/dashboard/workflow.html", context, status=404)
    context = {"section": "runs", "run": run, "can_change": can_change(request.user)}
    return TemplateResponse(request, "tasktrail/dashboard/workflow.html", context)


@staff_required
def timeline_data(request: HttpRequest, run_id: str) -> HttpResponseBase:
    run = find_run(run_id)
    if run is None:
        return JsonResponse({"error": f"No run {run_id}."}, status=404)
    return JsonResponse(payload(run.id, find_family(run, MAX_MEMBERS)))
