"""``tasktrail.evaluate_alerts``: the periodic evaluation celery beat runs.

Added to every celery beat automatically (``beat_init``) when ``TASKTRAIL["ALERTS"]``
has rules, every ``INTERVAL`` seconds; a project that lists its schedule by hand adds
``**tasktrail.alerts.tasks.beat_entry()`` to ``CELERY_BEAT_SCHEDULE``. Several beats,
several workers, a manual call: the claim table keeps every message single.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.db import DatabaseError, close_old_connections

from .validation import load

logger = logging.getLogger("tasktrail")

EVALUATE_TASK = "tasktrail.evaluate_alerts"


@shared_task(name=EVALUATE_TASK, ignore_result=True)
def evaluate_alerts() -> int:
    """One evaluation round; returns how many messages this process sent."""
    from .delivery import evaluate

    close_old_connections()
    try:
        report = evaluate()
    except DatabaseError as exc:  # the next round catches up: claims live in the database
        logger.warning("tasktrail: alerts not evaluated, the database failed: %s", exc)
        return 0
    return report.sent


def beat_entry() -> dict[str, dict[str, Any]]:
    """The beat schedule entry; empty when no rule is configured. A round that waited
    longer than the interval in the queue expires: the next one does its work."""
    config = load()
    if not config.rules:
        return {}
    every = timedelta(seconds=config.interval)
    return {
        EVALUATE_TASK: {
            "task": EVALUATE_TASK,
            "schedule": every,
            "options": {"expires": config.interval},
        }
    }


def install_beat_entry(sender: Any = None, **_: Any) -> None:
    """``beat_init`` receiver: schedule the evaluation unless the project did."""
    entry = beat_entry()
    scheduler = getattr(sender, "scheduler", None)
    if not entry or scheduler is None:
        return
    if any(getattr(e, "task", "") == EVALUATE_TASK for e in scheduler.schedule.values()):
        return
    scheduler.update_from_dict(entry)
    logger.info("tasktrail: scheduled %s every %ss", EVALUATE_TASK, load().interval)
