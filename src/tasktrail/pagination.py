"""Keyset (cursor) pagination over ``(enqueued_at, id)``, newest first."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from django.db.models import Q, QuerySet

from . import ids
from .models import TaskRun


class BadCursor(ValueError):
    pass


def encode_cursor(row: TaskRun) -> str:
    raw = json.dumps([row.enqueued_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if len(cursor) > 400:
        raise BadCursor("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, run_id = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("the cursor's time has no time zone")
        if not isinstance(run_id, str) or not ids.is_valid(run_id):
            raise ValueError("the cursor's run id is not one tasktrail can hold")
        return moment.astimezone(UTC), run_id  # OverflowError: out of range in UTC
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise BadCursor(f"malformed cursor: {exc}") from None


def page(
    queryset: QuerySet[TaskRun], cursor: str | None, size: int
) -> tuple[list[TaskRun], str | None]:
    """One page of runs and the cursor of the next page (``None`` on the last)."""
    queryset = queryset.order_by("-enqueued_at", "-id")
    if cursor:
        stamp, run_id = decode_cursor(cursor)
        queryset = queryset.filter(Q(enqueued_at__lt=stamp) | Q(enqueued_at=stamp, id__lt=run_id))
    rows = list(queryset[: size + 1])
    following = encode_cursor(rows[size - 1]) if len(rows) > size else None
    return rows[:size], following
