"""Queue controls on the queues page: pause/resume a queue, set a task's rate limit.

POST only, CSRF-checked, for staff holding the change permission; each action is
audited (an ``AuditEntry`` without a run, the queue or task in its ``detail``).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect

from tasktrail import audit, queue_controls
from tasktrail.models import AuditEntry

from .access import change_required

logger = logging.getLogger("tasktrail")
BACK = "tasktrail-dashboard:queues"


@change_required
def toggle_queue(request: HttpRequest) -> HttpResponseBase:
    queue = request.POST.get("queue", "")
    pausing = request.POST.get("paused") == "1"
    try:
        control = queue_controls.pause if pausing else queue_controls.resume
        broadcast = control(queue)
    except queue_controls.BadControl as exc:
        messages.error(request, str(exc))
        return redirect(BACK)
    except redis.RedisError as exc:
        messages.error(request, f"Redis is unreachable, nothing changed: {exc}")
        return redirect(BACK)
    action = AuditEntry.Action.PAUSE_QUEUE if pausing else AuditEntry.Action.RESUME_QUEUE
    audit.from_request(request, action, queue=queue, replies=broadcast.replies)
    verb = "paused" if pausing else "resumed"
    logger.info("tasktrail: %s %s queue %s", request.user, verb, queue)
    messages.success(request, f"Queue {queue} {verb}: {broadcast.summary()}.")
    return redirect(BACK)


@change_required
def rate_limit(request: HttpRequest) -> HttpResponseBase:
    task = request.POST.get("task", "").strip()
    try:
        value = queue_controls.check_rate(request.POST.get("rate", ""))
        broadcast = queue_controls.set_rate_limit(task, value)
    except queue_controls.BadControl as exc:
        messages.error(request, str(exc))
        return redirect(BACK)
    except redis.RedisError as exc:
        messages.error(request, f"Redis is unreachable, nothing changed: {exc}")
        return redirect(BACK)
    audit.from_request(
        request, AuditEntry.Action.RATE_LIMIT, task=task, rate=value, replies=broadcast.replies
    )
    logger.info("tasktrail: %s set rate limit %r on %s", request.user, value, task)
    shown = value or "none"
    messages.success(request, f"Rate limit of {task}: {shown} ({broadcast.summary()}).")
    return redirect(BACK)


def page_context(listed: set[str]) -> dict[str, Any]:
    """The queues page's view of the remembered controls (empty while Redis is down);
    ``paused_elsewhere``: paused queues the table does not list, so they can be resumed."""
    try:
        paused, limits = queue_controls.paused_queues(), queue_controls.rate_limits()
    except redis.RedisError:
        paused, limits = set(), {}
    return {
        "paused": paused,
        "paused_elsewhere": sorted(paused - listed),
        "rate_limits": dict(sorted(limits.items())),
    }
