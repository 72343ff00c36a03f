"""Frozen records handed to users, and how they are built from Redis or the database."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.utils import timezone

from .status import FINISHED, Status

if TYPE_CHECKING:
    from .models import TaskRun


@dataclass(frozen=True, kw_only=True)
class Progress:
    current: float | None = None
    total: float | None = None
    message: str = ""

    @property
    def percent(self) -> float | None:
        if self.current is None or not self.total:
            return None
        return round(min(100.0, max(0.0, self.current * 100.0 / self.total)), 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "current": _number(self.current),
            "total": _number(self.total),
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True)
class RunError:
    type: str
    message: str
    traceback: str = ""
    # Why the run ended other than by its own return or raise ("" when it did).
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RunData:
    """A snapshot of one run. ``tasktrail.Run`` adds the handle methods."""

    id: str
    task: str
    status: Status
    progress: Progress
    result: Any = None
    error: RunError | None = None
    attempts: int = 0
    queue: str = ""
    worker: str = ""
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    last_attempted_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    owner_id: str | None = None
    team: str = ""
    subject: str = ""
    idempotency_key: str | None = None
    parent_id: str = ""
    root_id: str = ""
    group_id: str = ""
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    cancel_requested_at: datetime | None = None
    cancelled_by: str = ""
    retry_of: str = ""
    arguments_incomplete: bool = False
    generation: int = 1
    trace_id: str = ""
    span_id: str = ""

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def as_json(self) -> dict[str, Any]:
        """The run as the HTTP API shows it (without URLs, which need a request)."""
        data: dict[str, Any] = {
            "id": self.id,
            "task": self.task,
            "status": self.status.value,
            "progress": self.progress.as_json(),
            "attempts": self.attempts,
            "queue": self.queue,
            "subject": self.subject,
            "enqueued_at": _iso(self.enqueued_at),
            "started_at": _iso(self.started_at),
            "last_attempted_at": _iso(self.last_attempted_at),
            "finished_at": _iso(self.finished_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "parent_id": self.parent_id or None,
            "root_id": self.root_id or None,
            "group_id": self.group_id or None,
            "retry_of": self.retry_of or None,
            "cancel_requested_at": _iso(self.cancel_requested_at),
            "generation": self.generation,
            "trace_id": self.trace_id or None,
        }
        if self.status == Status.SUCCESSFUL:
            data["result"] = self.result
        if self.error is not None and self.status in (
            Status.FAILED, Status.RETRYING, Status.CANCELLED
        ):  # fmt: skip
            data["error"] = {
                "type": self.error.type,
                "message": self.error.message,
                "reason": self.error.reason or None,
            }
        return data


def _number(value: float | None) -> float | int | None:
    if value is not None and float(value).is_integer():
        return int(value)
    return value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def to_datetime(stamp: str | bytes | None) -> datetime | None:
    """An epoch stamp from the hot record as a datetime fit for the database."""
    if not stamp:
        return None
    moment = datetime.fromtimestamp(float(stamp), tz=UTC)
    if not django_settings.USE_TZ:
        return timezone.make_naive(moment)
    return moment


def _text(raw: Mapping[str, str], name: str) -> str:
    return raw.get(name, "")


def _float(raw: Mapping[str, str], name: str) -> float | None:
    value = raw.get(name)
    return float(value) if value else None


def _json(raw: Mapping[str, str], name: str) -> Any:
    value = raw.get(name)
    return json.loads(value) if value else None


def decode_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def fields_from_hash(raw: Mapping[str, str]) -> dict[str, Any]:
    """The hot record's fields under the dataclass's names and types."""
    error = None
    if raw.get("error_type"):
        error = RunError(
            type=raw["error_type"],
            message=_text(raw, "error_message"),
            traceback=_text(raw, "error_traceback"),
            reason=_text(raw, "reason"),
        )
    return {
        "id": raw["id"],
        "task": _text(raw, "task"),
        "status": Status(raw.get("status") or Status.READY),
        "progress": Progress(
            current=_float(raw, "p_current"),
            total=_float(raw, "p_total"),
            message=_text(raw, "p_message"),
        ),
        "result": _json(raw, "result"),
        "error": error,
        "attempts": int(raw.get("attempts") or 0),
        "queue": _text(raw, "queue"),
        "worker": _text(raw, "worker"),
        "enqueued_at": to_datetime(raw.get("enqueued_at")),
        "started_at": to_datetime(raw.get("started_at")),
        "last_attempted_at": to_datetime(raw.get("last_attempted_at")),
        "finished_at": to_datetime(raw.get("finished_at")),
        "next_attempt_at": to_datetime(raw.get("next_attempt_at")),
        "owner_id": raw.get("owner") or None,
        "team": _text(raw, "team"),
        "subject": _text(raw, "subject"),
        "idempotency_key": raw.get("idem") or None,
        "parent_id": _text(raw, "parent"),
        "root_id": _text(raw, "root"),
        "group_id": _text(raw, "group"),
        "args": _json(raw, "args"),
        "kwargs": _json(raw, "kwargs"),
        "cancel_requested_at": to_datetime(raw.get("cancel_requested_at")),
        "cancelled_by": _text(raw, "cancelled_by"),
        "retry_of": _text(raw, "retry_of"),
        "arguments_incomplete": raw.get("args_incomplete") == "1",
        "generation": int(raw.get("gen") or 1),
        "trace_id": _text(raw, "trace_id"),
        "span_id": _text(raw, "span_id"),
    }


def fields_from_model(row: TaskRun) -> dict[str, Any]:
    error = None
    if row.error_type:
        error = RunError(
            type=row.error_type,
            message=row.error_message,
            traceback=row.error_traceback,
            reason=row.error_reason,
        )
    return {
        "id": row.id,
        "task": row.task,
        "status": Status(row.status),
        "progress": Progress(
            current=row.progress_current,
            total=row.progress_total,
            message=row.progress_message,
        ),
        "result": row.result,
        "error": error,
        "attempts": row.attempts,
        "queue": row.queue,
        "worker": row.worker,
        "enqueued_at": row.enqueued_at,
        "started_at": row.started_at,
        "last_attempted_at": row.last_attempted_at,
        "finished_at": row.finished_at,
        "next_attempt_at": row.next_attempt_at,
        "owner_id": None if row.owner_id is None else str(row.owner_id),
        "team": row.team,
        "subject": row.subject,
        "idempotency_key": row.idempotency_key,
        "parent_id": row.parent_id,
        "root_id": row.root_id,
        "group_id": row.group_id,
        "args": row.args,
        "kwargs": row.kwargs,
        "cancel_requested_at": row.cancel_requested_at,
        "cancelled_by": row.cancelled_by,
        "retry_of": row.retry_of,
        "arguments_incomplete": row.arguments_incomplete,
        "generation": row.generation,
        "trace_id": row.trace_id,
        "span_id": row.span_id,
    }
