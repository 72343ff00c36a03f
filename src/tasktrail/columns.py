"""How a hot record's fields (Redis hash) map onto ``TaskRun`` columns, in one table.

The flusher converts whole records; the outage fallback converts just the fields one
transition sets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .records import to_datetime

# PostgreSQL's text and jsonb refuse NUL: it becomes U+FFFD, the replacement character,
# so a run holding one is still written whole (a run never written is lost for good).
REPLACEMENT = "\ufffd"


def _text(value: str) -> str:
    return value.replace("\x00", REPLACEMENT) if "\x00" in value else value


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_text(key): _without_nul(item) for key, item in value.items()}
    return value


def _number(value: str) -> float | None:
    return float(value) if value else None


def _whole(value: str) -> int:
    return int(value or 0)


def _generation(value: str) -> int:
    return int(value or 1)


def _json(value: str) -> Any:
    if not value:
        return None
    parsed = json.loads(value)
    return _without_nul(parsed) if "\\u0000" in value else parsed


def _flag(value: str) -> bool:
    return value == "1"


def _or_none(value: str) -> str | None:
    return _text(value) or None


# hash field -> (column, converter, value when the field is missing)
COLUMNS: dict[str, tuple[str, Callable[[str], Any], Any]] = {
    "id": ("id", _text, None),
    "task": ("task", _text, ""),
    "status": ("status", _text, "READY"),
    "queue": ("queue", _text, ""),
    "worker": ("worker", _text, ""),
    "attempts": ("attempts", _whole, 0),
    "p_current": ("progress_current", _number, None),
    "p_total": ("progress_total", _number, None),
    "p_message": ("progress_message", _text, ""),
    "args": ("args", _json, None),
    "kwargs": ("kwargs", _json, None),
    "result": ("result", _json, None),
    "error_type": ("error_type", _text, ""),
    "error_message": ("error_message", _text, ""),
    "error_traceback": ("error_traceback", _text, ""),
    "reason": ("error_reason", _text, ""),
    "enqueued_at": ("enqueued_at", to_datetime, None),
    "started_at": ("started_at", to_datetime, None),
    "last_attempted_at": ("last_attempted_at", to_datetime, None),
    "finished_at": ("finished_at", to_datetime, None),
    "next_attempt_at": ("next_attempt_at", to_datetime, None),
    "owner": ("owner_id", _or_none, None),
    "team": ("team", _text, ""),
    "subject": ("subject", _text, ""),
    "idem": ("idempotency_key", _or_none, None),
    "parent": ("parent_id", _text, ""),
    "root": ("root_id", _text, ""),
    "group": ("group_id", _text, ""),
    "cancel_requested_at": ("cancel_requested_at", to_datetime, None),
    "cancelled_by": ("cancelled_by", _text, ""),
    "retry_of": ("retry_of", _text, ""),
    "args_incomplete": ("arguments_incomplete", _flag, False),
    "trace_id": ("trace_id", _text, ""),
    "span_id": ("span_id", _text, ""),
    "gen": ("generation", _generation, 1),
    "version": ("version", _whole, 0),
}


def full_row(raw: Mapping[str, str]) -> dict[str, Any]:
    """Every column, missing fields at their defaults (the flusher)."""
    row = {}
    for field, (column, convert, default) in COLUMNS.items():
        value = raw.get(field)
        row[column] = default if value is None else convert(value)
    if row["enqueued_at"] is None:  # a record first seen at start, say
        import time

        row["enqueued_at"] = to_datetime(str(time.time()))
    return row


def partial_row(raw: Mapping[str, str]) -> dict[str, Any]:
    """Only the columns of the fields given (the outage fallback)."""
    return {
        COLUMNS[field][0]: COLUMNS[field][1](value)
        for field, value in raw.items()
        if field in COLUMNS
    }
