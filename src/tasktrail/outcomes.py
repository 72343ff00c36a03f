"""How each way a Celery run can end, or pause, becomes one transition.

Two callers share these: the result backend (``tasktrail.backend``), which sees every
state Celery stores, including ones no signal reports (``update_state``, chain steps
failed without running, chord bodies), and the signal receivers, which cover what no
backend sees (eager runs, ``ignore_result`` tasks, another result backend).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .conf import settings
from .redaction import capped_json
from .status import Status
from .transitions import ANY_ATTEMPT, Applied, CeleryMeta, Op, dumps, safely, stamp


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where a write comes from: the attempt and generation of the execution making it
    (any, when it is not the run's own execution), Celery's result meta to store with
    it, and the record it may create (None: only an existing record changes, as for a
    task tasktrail does not track)."""

    attempt: int = ANY_ATTEMPT
    generation: int | None = None
    meta: CeleryMeta | None = None
    create: Mapping[str, str] | None = None


# Why a run ended other than by its own return or raise, as ``error.reason``.
REASONS = frozenset(
    {"revoked", "expired", "terminated", "cancelled", "lost", "time_limit", "rejected",
     "ignored", "not_registered", "never_delivered"}
)  # fmt: skip

_REASON_BY_ERROR = {
    "celery.exceptions.WorkerLostError": "lost",
    "billiard.exceptions.WorkerLostError": "lost",
    "tasktrail.exceptions.WorkerLost": "lost",
    "celery.exceptions.TimeLimitExceeded": "time_limit",
    "billiard.exceptions.TimeLimitExceeded": "time_limit",
    "celery.exceptions.NotRegistered": "not_registered",
    "tasktrail.exceptions.RunCancelled": "cancelled",
    "celery.exceptions.Reject": "rejected",
}


def error_type(kind: type[BaseException]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _jsonable(value: Any) -> Any:
    """What kombu's JSON encoder, and so Celery's result, makes of a value JSON has no
    word for: an object's ``__json__()``, else its text."""
    method = getattr(value, "__json__", None)
    return method() if callable(method) else str(value)


def _dumps_result(value: Any) -> str:
    return dumps(value, default=_jsonable)


def json_result(value: Any) -> str:
    try:
        return capped_json(value, int(settings.MAX_RESULT_BYTES), _dumps_result)
    except (TypeError, ValueError):
        return dumps({"unserializable": repr(value)[:1000]})


def _state_event(run_id: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("state", {"run": run_id, "at": time.time(), **extra})


def _send(
    run_id: str,
    op: Op,
    origin: Origin,
    *,
    status: str,
    fields: dict[str, str],
    events: list[tuple[str, Mapping[str, Any] | str]],
    now: float,
    flags: str = "",
) -> Applied | None:
    return safely(
        run_id,
        op,
        attempt=origin.attempt,
        status=status,
        fields=fields,
        create=origin.create,
        events=events,
        now=now,
        generation=origin.generation,
        flags=flags + ("" if origin.create else "x"),  # no record for an untracked task
        meta=origin.meta,
    )


def succeeded(run_id: str, value: Any, origin: Origin, *, reason: str = "") -> Applied | None:
    now = time.time()
    text = json_result(value)
    fields = {
        "finished_at": stamp(now),
        "result": text,
        "next_attempt_at": "",
        "error_type": "",
        "error_message": "",
        "error_traceback": "",
        "reason": reason,
    }
    return _send(
        run_id,
        "finish",
        origin,
        status=Status.SUCCESSFUL,
        fields=fields,
        events=[
            ("result", f'{{"run":{dumps(run_id)},"result":{text}}}'),
            _state_event(run_id, **({"reason": reason} if reason else {})),
        ],
        now=now,
    )


def ended_with_error(
    run_id: str,
    origin: Origin,
    *,
    kind: str,
    message: str,
    traceback: str = "",
    reason: str = "",
    cancelled: bool = False,
) -> Applied | None:
    """FAILED, or CANCELLED (a revoke, a cancel the task obeyed)."""
    now = time.time()
    reason = reason or _REASON_BY_ERROR.get(kind, "")
    fields = {
        "finished_at": stamp(now),
        "error_type": kind,
        "error_message": message,
        "error_traceback": traceback,
        "reason": reason,
        "next_attempt_at": "",
    }
    error = {"type": kind, "message": message, "reason": reason or None}
    return _send(
        run_id,
        "finish",
        origin,
        status=Status.CANCELLED if cancelled else Status.FAILED,
        fields=fields,
        events=[_state_event(run_id, error=error, **({"reason": reason} if reason else {}))],
        now=now,
    )


def retrying(
    run_id: str,
    origin: Origin,
    *,
    kind: str,
    message: str,
    traceback: str = "",
    when: float | None = None,
) -> Applied | None:
    fields = {"error_type": kind, "error_message": message, "error_traceback": traceback}
    if when:
        fields["next_attempt_at"] = stamp(when)
    return _send(
        run_id,
        "retry",
        origin,
        status=Status.RETRYING,
        fields=fields,
        events=[
            _state_event(
                run_id,
                error={"type": kind, "message": message},
                # Unknown to a backend's retry: the script adds what the publish set.
                **({"next_attempt_at": when} if when else {}),
            )
        ],
        now=time.time(),
    )


def _progress_of(info: Any) -> dict[str, str]:
    """Progress in a custom state's meta, as celery-progress and most teams write it:
    ``{"current": 3, "total": 10}`` (``done``/``pending`` and ``percent`` too)."""
    if not isinstance(info, Mapping):
        return {}
    current = info.get("current", info.get("done"))
    total = info.get("total")
    if current is None and isinstance(info.get("percent"), int | float):
        current, total = info["percent"], 100
    fields: dict[str, str] = {}
    if isinstance(current, int | float) and not isinstance(current, bool):
        fields["p_current"] = repr(float(current))
        if isinstance(total, int | float) and not isinstance(total, bool):
            fields["p_total"] = repr(float(total))
    message = info.get("message", info.get("description", info.get("status")))
    if isinstance(message, str):
        fields["p_message"] = message
    return fields


def custom_state(run_id: str, state: str, info: Any, origin: Origin) -> Applied | None:
    """``update_state(state="PROGRESS", meta=...)`` or any state of the task's own: the
    run is running, with the progress the meta carries."""
    fields = _progress_of(info)
    fields["celery_state"] = state
    events: list[tuple[str, Mapping[str, Any] | str]] = []
    if "p_current" in fields:
        data: dict[str, Any] = {"run": run_id, "current": float(fields["p_current"])}
        if "p_total" in fields and float(fields["p_total"]):
            total = float(fields["p_total"])
            data["total"] = total
            data["percent"] = round(min(100.0, max(0.0, data["current"] * 100.0 / total)), 2)
        if "p_message" in fields:
            data["message"] = fields["p_message"]
        events.append(("progress", data))
    return _send(
        run_id,
        "store",
        origin,
        status=Status.RUNNING,
        fields=fields,
        events=events,
        now=time.time(),
    )


def meta_only(run_id: str, origin: Origin) -> Applied | None:
    """A state the signals already reported (STARTED): only Celery's meta is stored."""
    return _send(run_id, "store", origin, status="", fields={}, events=[], now=time.time(),
                 flags="m")  # fmt: skip


def failed_outside_celery(
    run_id: str, error: Exception, *, reason: str, create: Mapping[str, str] | None = None
) -> Applied | None:
    """A run Celery will never settle itself (its worker died after acknowledging it,
    the broker lost its message): FAILED, and, with tasktrail as the result backend,
    Celery's result too, so ``AsyncResult.get()`` ends instead of waiting for ever."""
    from celery import current_app, states

    backend = current_app.backend
    meta = None
    if hasattr(backend, "meta_for") and getattr(backend, "records_runs", False):
        meta = backend.meta_for(run_id, error, states.FAILURE)
    return ended_with_error(
        run_id,
        Origin(meta=meta, create=create),
        kind=error_type(type(error)),
        message=str(error),
        reason=reason,
    )
