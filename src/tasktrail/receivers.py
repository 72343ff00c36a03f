"""Celery signal receivers: each translates one lifecycle step into one transition.

Connected in ``TasktrailConfig.ready()``, so every Celery task is tracked, decorated
or not, in every process that loads Django (web, worker, beat).
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from contextvars import ContextVar
from datetime import datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from celery import signals
from celery.exceptions import Retry

from . import reporting
from .conf import settings
from .exceptions import RunCancelled
from .redaction import capped_json, redact_call
from .status import Status
from .transitions import ANY_ATTEMPT, dumps, safely, stamp

logger = logging.getLogger("tasktrail")

# Set by ``enqueue()`` around ``apply_async`` so the publish receiver can record
# owner, team, subject and idempotency key with the run.
publish_context: ContextVar[dict[str, str] | None] = ContextVar(
    "tasktrail_publish_context", default=None
)


@lru_cache(maxsize=32)
def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def is_tracked(task_name: str) -> bool:
    return not _excluded(task_name, tuple(settings.EXCLUDE_TASKS))


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def _state_event(run_id: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("state", {"run": run_id, "at": time.time(), **extra})


def _error_fields(exc: BaseException, traceback_text: str) -> dict[str, str]:
    kind = type(exc)
    return {
        "error_type": f"{kind.__module__}.{kind.__qualname__}",
        "error_message": str(exc),
        "error_traceback": traceback_text,
    }


def _json_result(value: Any) -> str:
    try:
        return capped_json(value, int(settings.MAX_RESULT_BYTES), dumps)
    except (TypeError, ValueError):
        return dumps({"unserializable": repr(value)[:1000]})


def _stored_arguments(name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, str]:
    safe_args, safe_kwargs, hidden = redact_call(name, args, kwargs)
    limit = int(settings.MAX_ARGUMENT_BYTES)
    stored = {
        "args": capped_json(safe_args, limit, dumps),
        "kwargs": capped_json(safe_kwargs, limit, dumps),
    }
    if hidden or '"truncated":' in stored["args"] + stored["kwargs"]:
        stored["args_incomplete"] = "1"  # retry() must not replay placeholders
    return stored


def on_before_task_publish(
    sender: str | None = None,
    body: Any = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if not headers or "id" not in headers:
        return  # task protocol 1 is not supported; Celery 5 defaults to protocol 2
    name = str(headers.get("task") or sender or "")
    if not is_tracked(name):
        return
    run_id = str(headers["id"])
    now = time.time()
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ([], {})
    )
    context = publish_context.get() or {}
    create = {
        "id": run_id,
        "task": name,
        "enqueued_at": stamp(now),
        "queue": routing_key or "",
        "parent": str(headers.get("parent_id") or ""),
        "root": str(headers.get("root_id") or ""),
        "group": str(headers.get("group") or ""),
        **_stored_arguments(name, list(args), dict(kwargs)),
        **context,
    }
    eta = _epoch(headers.get("eta"))
    fields = {"next_attempt_at": stamp(eta)} if eta else {}
    safely(
        run_id,
        "publish",
        status=Status.READY,
        fields=fields,
        create=create,
        events=[_state_event(run_id, task=name, next_attempt_at=eta)],
        now=now,
        parent_id=create["parent"],
    )


def _attempt(task: Any) -> int:
    return int(getattr(task.request, "retries", 0) or 0) + 1


def on_task_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is None or not is_tracked(task.name):
        return
    attempt = _attempt(task)
    now = time.time()
    delivery = getattr(task.request, "delivery_info", None) or {}
    worker = str(getattr(task.request, "hostname", "") or "")
    tracker = reporting.begin(task_id, attempt)
    tracker.record(
        "start",
        status=Status.RUNNING,
        fields={"last_attempted_at": stamp(now), "worker": worker, "next_attempt_at": ""},
        create={
            "id": task_id,
            "task": task.name,
            "enqueued_at": stamp(now),
            "started_at": stamp(now),
            "queue": str(delivery.get("routing_key") or ""),
            "parent": str(getattr(task.request, "parent_id", "") or ""),
            "root": str(getattr(task.request, "root_id", "") or ""),
            "group": str(getattr(task.request, "group", "") or ""),
        },
        events=[_state_event(task_id, worker=worker)],
        now=now,
    )


def on_task_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if sender is None or not is_tracked(sender.name):
        return
    reporting.end()
    run_id = str(sender.request.id)
    now = time.time()
    text = _json_result(result)
    safely(
        run_id,
        "finish",
        attempt=_attempt(sender),
        status=Status.SUCCESSFUL,
        fields={"finished_at": stamp(now), "result": text},
        events=[("result", f'{{"run":{dumps(run_id)},"result":{text}}}'), _state_event(run_id)],
        now=now,
    )


def on_task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    if sender is None or request is None or not is_tracked(sender.name):
        return
    reporting.end()
    exc = reason.exc if isinstance(reason, Retry) and reason.exc is not None else reason
    if isinstance(exc, RunCancelled):  # autoretry_for=(Exception,) must not revive it
        on_task_failure(sender=sender, task_id=str(request.id), exception=exc)
        return
    fields: dict[str, str] = {}
    if isinstance(exc, BaseException):
        fields = _error_fields(exc, "".join(tb.format_exception(exc)))
    when = _epoch(reason.when) if isinstance(reason, Retry) and reason.when is not None else None
    if isinstance(reason, Retry) and isinstance(reason.when, int | float):
        when = time.time() + float(reason.when)
    if when:
        fields["next_attempt_at"] = stamp(when)
    run_id = str(request.id)
    safely(
        run_id,
        "retry",
        attempt=int(request.retries or 0) + 1,
        status=Status.RETRYING,
        fields=fields,
        events=[
            _state_event(
                run_id,
                next_attempt_at=when,
                error={
                    "type": fields.get("error_type", ""),
                    "message": fields.get("error_message", ""),
                },
            )
        ],
    )


def on_task_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    if sender is None or not is_tracked(sender.name):
        return
    reporting.end()
    now = time.time()
    exc = exception if exception is not None else RuntimeError("unknown failure")
    status = Status.CANCELLED if isinstance(exc, RunCancelled) else Status.FAILED
    fields = _error_fields(exc, str(getattr(einfo, "traceback", "") or ""))
    fields["finished_at"] = stamp(now)
    safely(
        task_id,
        "finish",
        attempt=_attempt(sender),
        status=status,
        fields=fields,
        events=[
            _state_event(
                task_id, error={"type": fields["error_type"], "message": fields["error_message"]}
            )
        ],
        now=now,
    )


def on_task_revoked(
    sender: Any = None, request: Any = None, expired: bool = False, **_: Any
) -> None:
    if request is None or (sender is not None and not is_tracked(sender.name)):
        return
    now = time.time()
    run_id = str(request.id)
    reason = "expired" if expired else "revoked"
    safely(
        run_id,
        "finish",
        attempt=ANY_ATTEMPT,
        status=Status.CANCELLED,
        fields={
            "finished_at": stamp(now),
            "error_type": "celery.exceptions.TaskRevokedError",
            "error_message": reason,
        },
        events=[_state_event(run_id, reason=reason)],
        now=now,
    )


def on_task_unknown(
    name: str = "", id: str = "", exc: BaseException | None = None, **_: Any
) -> None:
    """A message for a task no worker has registered: fail it honestly instead of PENDING."""
    if not id or not is_tracked(name):
        return
    now = time.time()
    error = exc if exc is not None else LookupError(name)
    fields = _error_fields(error, "")
    fields["finished_at"] = stamp(now)
    safely(
        id,
        "finish",
        attempt=ANY_ATTEMPT,
        status=Status.FAILED,
        fields=fields,
        create={"id": id, "task": name, "enqueued_at": stamp(now)},
        events=[
            _state_event(
                id, error={"type": fields["error_type"], "message": fields["error_message"]}
            )
        ],
        now=now,
    )


def on_worker_init(sender: Any = None, **_: Any) -> None:
    from . import workers

    hostname = str(getattr(sender, "hostname", "") or "")
    if hostname:
        workers.prepare(hostname)


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    from . import flusher, workers

    if settings.FLUSH_IN_WORKER:
        flusher.start()
    hostname = str(getattr(sender, "hostname", "") or "")
    if hostname:
        pool = getattr(sender, "pool", None)
        concurrency = int(
            getattr(pool, "num_processes", 0) or getattr(sender, "concurrency", 0) or 0
        )
        queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
        workers.start(hostname, concurrency, queues)


def on_worker_shutdown(**_: Any) -> None:
    from . import flusher, workers

    workers.stop()
    flusher.stop()


def connect() -> None:
    """Connect every receiver (idempotent: each has a dispatch uid)."""
    pairs = [
        (signals.before_task_publish, on_before_task_publish),
        (signals.task_prerun, on_task_prerun),
        (signals.task_success, on_task_success),
        (signals.task_retry, on_task_retry),
        (signals.task_failure, on_task_failure),
        (signals.task_revoked, on_task_revoked),
        (signals.task_unknown, on_task_unknown),
        (signals.worker_init, on_worker_init),
        (signals.worker_ready, on_worker_ready),
        (signals.worker_shutdown, on_worker_shutdown),
    ]
    for signal, receiver in pairs:
        signal.connect(receiver, weak=False, dispatch_uid=f"tasktrail.{receiver.__name__}")  # type: ignore[call-overload]
