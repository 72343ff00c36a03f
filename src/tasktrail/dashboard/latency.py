"""The latency screen: queue wait and runtime percentiles per task, and one task's charts."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.utils import timezone

from tasktrail import latency

from . import charts
from .access import can_change, staff_required

MAX_TASK_NAME = 255  # TaskRun.task's length


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> TemplateResponse:
    context = {"section": "latency", "can_change": can_change(request.user), **context}
    return TemplateResponse(request, f"tasktrail/dashboard/{template}", context, status=status)


def _cells(p: latency.Percentiles) -> list[str]:
    return [charts.seconds_label(v) for v in (p.p50, p.p95, p.p99)] + [f"{p.count:,}"]


def _windows(items: list[latency.TaskLatency]) -> list[dict[str, object]]:
    """The last hour's table (tasks with runs in it) and the last day's."""
    hour = [
        {"task": i.task, "cells": [*_cells(i.hour_wait), *_cells(i.hour_runtime)]}
        for i in items
        if i.hour_wait.count or i.hour_runtime.count
    ]
    day = [{"task": i.task, "cells": [*_cells(i.day_wait), *_cells(i.day_runtime)]} for i in items]
    return [{"title": "Last hour", "rows": hour}, {"title": "Last 24 hours", "rows": day}]


@staff_required
def latency_view(request: HttpRequest) -> HttpResponseBase:
    """``?task=<name>``: that task's charts; without it, the table of every task."""
    now = timezone.now()
    task = request.GET.get("task", "")
    if len(task) > MAX_TASK_NAME:
        error = f"A task name is at most {MAX_TASK_NAME} characters."
        return _render(request, "latency.html", {"error": error}, 400)
    if not task:
        windows = _windows(latency.by_task(now))
        return _render(request, "latency.html", {"windows": windows})
    hour = latency.series(task, "minute", now)
    day = latency.series(task, "hour", now)
    context = {
        "task": task,
        "now": now,
        "charts": [
            charts.latency_chart("Queue wait, last hour", [p.wait for p in hour], "per minute"),
            charts.latency_chart("Runtime, last hour", [p.runtime for p in hour], "per minute"),
            charts.latency_chart("Queue wait, last 24 hours", [p.wait for p in day], "per hour"),
            charts.latency_chart("Runtime, last 24 hours", [p.runtime for p in day], "per hour"),
        ],
    }
    return _render(request, "latency_task.html", context)
