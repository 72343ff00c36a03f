"""What Celery says about a task id, what tasktrail says, and where they differ.

:func:`celery_view` reads Celery's own answer (``AsyncResult``, or an ``EagerResult``
for in-process runs); :func:`tasktrail_view` reads ``get_run``; :func:`disagreements`
lists the fields on which they differ, under the mapping of docs and DESIGN.md:

=====================  ===============================================
Celery state           tasktrail record
=====================  ===============================================
PENDING                no record (``RunNotFound``) or READY
STARTED, custom        RUNNING (``PROGRESS`` meta -> ``run.progress``)
RETRY                  RETRYING
SUCCESS                SUCCESSFUL, same result (JSON-normalised), no error
FAILURE                FAILED, ``error.type`` = the stored exception's type
REVOKED                CANCELLED, ``error.reason`` = Celery's reason
=====================  ===============================================
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from celery import Celery, states
from celery.result import AsyncResult, EagerResult

from tasktrail import get_run
from tasktrail.exceptions import RunNotFound
from tasktrail.runs import Run
from tasktrail.status import Status

EXPECTED_STATUS: dict[str, Status] = {
    states.SUCCESS: Status.SUCCESSFUL,
    states.FAILURE: Status.FAILED,
    states.REVOKED: Status.CANCELLED,
    states.RETRY: Status.RETRYING,
    states.STARTED: Status.RUNNING,
}

# Why a FAILED run failed, where Celery's stored exception says it unambiguously.
REASON_BY_EXCEPTION = {
    "celery.exceptions.TimeLimitExceeded": "time_limit",
    "billiard.exceptions.WorkerLostError": "lost",
    "celery.exceptions.Reject": "rejected",
}

ABSENT = "no record (RunNotFound)"


@dataclass(frozen=True)
class CeleryView:
    """Celery's answer for one id: state, result (a value or an exception) and, for an
    exception, its type as Celery stored it (``module.QualName``)."""

    state: str
    result: Any
    exc_type: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def describe(self) -> str:
        if self.exc_type:
            return f"{self.state} {self.exc_type}({_safe_str(self.result)})"
        return f"{self.state} {self.result!r}"


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # an exception whose __str__ raises
        return f"<unprintable {type(value).__name__}>"


def _stored_exc_type(app: Celery, task_id: str) -> str | None:
    """The exception type exactly as the backend stored it. Celery rebuilds the exception
    from it and falls back to a plain ``Exception`` when the class cannot be rebuilt from
    its args; the stored type is the truth either way."""
    backend: Any = app.backend
    try:
        meta = backend.decode(backend.get(backend.get_key_for_task(task_id)))
        stored = meta["result"]
        return f"{stored['exc_module']}.{stored['exc_type']}"
    except Exception:  # a backend that stores differently: use the object
        return None


def celery_view(app: Celery, task_id: str) -> CeleryView:
    result: AsyncResult[Any] = AsyncResult(task_id, app=app)
    state = result.state
    value = result.result
    exc_type = None
    if isinstance(value, BaseException):
        exc_type = _stored_exc_type(app, task_id) or _type_name(value)
    return CeleryView(state, value, exc_type)


def eager_view(result: EagerResult[Any]) -> CeleryView:
    value = result.result
    exc_type = _type_name(value) if isinstance(value, BaseException) else None
    return CeleryView(result.state, value, exc_type)


def tasktrail_view(task_id: str) -> Run | None:
    try:
        return get_run(task_id)
    except RunNotFound:
        return None


# -- JSON normalisation ------------------------------------------------------------


def same(celery: Any, stored: Any) -> bool:
    """Whether tasktrail's JSON ``stored`` says what Celery's ``celery`` value says.
    Celery hands back kombu's JSON types (datetime, date, Decimal, UUID) and tuples as
    lists; a JSON store holds their text, so those compare by meaning, the rest exactly
    (``1`` is not ``"1"``, ``True`` is not ``1``)."""
    try:
        if isinstance(celery, Mapping):
            return (
                isinstance(stored, Mapping)
                and set(map(str, celery)) == set(stored)
                and all(same(v, stored[str(k)]) for k, v in celery.items())
            )
        if isinstance(celery, list | tuple):
            return (
                isinstance(stored, list)
                and len(stored) == len(celery)
                and all(same(a, b) for a, b in zip(celery, stored, strict=True))
            )
        if isinstance(celery, dt.datetime):
            return isinstance(stored, str) and dt.datetime.fromisoformat(stored) == celery
        if isinstance(celery, dt.date):
            return isinstance(stored, str) and dt.date.fromisoformat(stored) == celery
        if isinstance(celery, dt.time):
            return isinstance(stored, str) and dt.time.fromisoformat(stored) == celery
        if isinstance(celery, Decimal):
            return isinstance(stored, str | int | float) and Decimal(str(stored)) == celery
        if isinstance(celery, uuid.UUID):
            return isinstance(stored, str) and uuid.UUID(stored) == celery
    except (TypeError, ValueError, ArithmeticError):
        return False
    if isinstance(celery, bool) or isinstance(stored, bool):
        return type(celery) is type(stored) and celery == stored
    if isinstance(celery, int | float) and isinstance(stored, int | float):
        return celery == stored
    return type(celery) is type(stored) and celery == stored


# -- the comparison ----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One field on which Celery and tasktrail differ."""

    field: str
    celery: str
    tasktrail: str


def expected_status(state: str) -> Status | None:
    """The status a record must have for this Celery state; None for PENDING (no record
    or READY); custom states count as running."""
    if state == states.PENDING:
        return None
    return EXPECTED_STATUS.get(state, Status.RUNNING)


def reason_of(run: Run) -> Any:
    error = run.as_json().get("error")
    if not isinstance(error, dict):
        return "(no error in as_json())"
    return error.get("reason", "(no reason key)")


def disagreements(view: CeleryView, run: Run | None) -> list[Row]:
    """Every field on which tasktrail's record differs from Celery's answer."""
    rows: list[Row] = []
    expected = expected_status(view.state)
    if expected is None:
        if run is not None and run.status != Status.READY:
            rows.append(Row("status", "PENDING -> no record or READY", run.status.value))
        return rows
    if run is None:
        rows.append(Row("status", f"{view.state} -> {expected.value}", ABSENT))
        return rows
    if run.status != expected:
        rows.append(Row("status", f"{view.state} -> {expected.value}", run.status.value))
    if view.state == states.SUCCESS:
        if not same(view.result, run.result):
            rows.append(Row("result", repr(view.result), repr(run.result)))
        if run.error is not None:
            rows.append(Row("error", "none (SUCCESS)", f"{run.error.type}: {run.error.message}"))
    elif view.exc_type is not None:
        got = run.error.type if run.error is not None else "no error"
        if got != view.exc_type:
            rows.append(Row("error.type", view.exc_type, got))
        if view.state == states.REVOKED:
            reason = reason_of(run)
            if reason != _safe_str(view.result):
                rows.append(Row("error.reason", _safe_str(view.result), str(reason)))
        elif view.state == states.FAILURE and view.exc_type in REASON_BY_EXCEPTION:
            reason = reason_of(run)
            if reason != REASON_BY_EXCEPTION[view.exc_type]:
                rows.append(Row("error.reason", REASON_BY_EXCEPTION[view.exc_type], str(reason)))
    if expected == Status.RUNNING and isinstance(view.result, dict):
        for name in ("current", "total"):
            if name in view.result:
                got = getattr(run.progress, name)
                if got is None or float(got) != float(view.result[name]):
                    rows.append(Row(f"progress.{name}", repr(view.result[name]), repr(got)))
    return rows


def render(task_id: str, role: str, rows: list[Row], view: CeleryView | None) -> str:
    """A readable table of the differences for one id."""
    lines = [f"{role}  [{task_id}]"]
    if view is not None:
        lines.append(f"  celery says: {view.describe()}")
    width = max([len(r.celery) for r in rows] + [len("celery")])
    lines.append(f"  {'field':<16} {'celery':<{width}}  tasktrail")
    lines.extend(f"  {r.field:<16} {r.celery:<{width}}  {r.tasktrail}" for r in rows)
    return "\n".join(lines)


def summary(view: CeleryView) -> tuple[str, Any]:
    """What the control run compares: the state and the result (an exception by its
    stored type and its text, with task ids masked, since ids differ between runs)."""
    if view.exc_type is not None:
        return view.state, (view.exc_type, _mask(_safe_str(view.result)))
    return view.state, view.result


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+")


def _mask(text: str) -> str:
    return _UUID.sub("<id>", text)
