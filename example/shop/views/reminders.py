"""E-mail reminders (seed 004) and the beat schedules (seeds 002, 004)."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from tasktrail import accepted, enqueue

from ..models import Todo
from ..tasks.maintenance import cleanup_old_todos, send_low_stock_alert
from ..tasks.reminders import send_task_reminder
from .api import api, error

SCHEDULED = {
    "cleanup-old-todos": cleanup_old_todos,
    "send-low-stock-alerts": send_low_stock_alert,
}


def _todo_json(todo: Todo) -> dict[str, object]:
    return {
        "id": todo.pk,
        "title": todo.title,
        "due_date": todo.due_date,
        "status": todo.status,
        "reminded_at": todo.reminded_at,
    }


@api("GET")
def todos(request: HttpRequest) -> HttpResponse:
    items = Todo.objects.filter(owner=request.user, status=Todo.State.OPEN).order_by("due_date")
    return JsonResponse({"results": [_todo_json(t) for t in items[:100]]})


@api("POST")
def remind(request: HttpRequest, todo_id: int) -> HttpResponse:
    todo = Todo.objects.filter(pk=todo_id, owner=request.user).first()
    if todo is None:
        return error(404, "No such to-do.")
    run = enqueue(send_task_reminder, todo.pk, owner=request.user, subject=todo)
    return accepted(run, request, todo=_todo_json(todo))


@api("POST", staff=True)
def run_schedule(request: HttpRequest, name: str) -> HttpResponse:
    """Run a beat-scheduled task now (staff), as an operator would."""
    task = SCHEDULED.get(name)
    if task is None:
        return error(404, f"No schedule {name!r}; choose one of {', '.join(SCHEDULED)}.")
    return accepted(enqueue(task, owner=request.user), request, schedule=name)


def _schedules() -> list[dict[str, object]]:
    rows = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        schedule = entry["schedule"]
        every = (
            str(datetime.timedelta(seconds=schedule))
            if isinstance(schedule, int | float)
            else str(schedule)
        )
        rows.append({"name": name, "task": entry["task"], "every": every})
    return rows


@login_required
def page(request: HttpRequest) -> HttpResponse:
    items = Todo.objects.filter(owner=request.user).order_by("status", "due_date")[:20]
    return render(
        request,
        "shop/reminders.html",
        {"todos": items, "schedules": _schedules(), "today": timezone.localdate()},
    )
