"""Celery signal receivers: each translates one lifecycle step into one transition.

Connected in ``TasktrailConfig.ready()``, so every Celery task is tracked, decorated
or not, in every process that loads Django (web, worker, beat). With tasktrail as the
result backend (``tasktrail.backend``) the outcome of an attempt is recorded there, as
Celery stores it; the outcome receivers below record it only when no backend did
(eager runs, ``ignore_result``, another result backend), and ``task_postrun`` settles
whatever neither did (``Ignore``, ``Reject``).
"""

from __future__ import annotations

import logging
import time
import traceback as tb
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import redis
from celery import signals, states
from celery.exceptions import Ignore, Reject, Retry

from . import naming, outcomes, ownership, reporting, sweep, traces
from .conf import settings
from .exceptions import RunCancelled
from .redaction import capped_json, redact_call
from .status import Status
from .tracked import is_tracked
from .transitions import CeleryMeta, defer, dumps, stamp, submit

logger = logging.getLogger("tasktrail")

# Set by ``enqueue()`` around ``apply_async`` so the publish receiver can record
# owner, team, subject and idempotency key with the run.
publish_context: ContextVar[dict[str, str] | None] = ContextVar(
    "tasktrail_publish_context", default=None
)

# The message header that carries a run's generation from its publish to its worker.
GENERATION_HEADER = "tasktrail_gen"
# What ``Task.on_replace`` raises once the replacement is published.
REPLACED = "Replaced by new task"


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


def _generation(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _result_key(run_id: str) -> tuple[str, str]:
    """Celery's result key of the run and the flag that resets it with a new generation,
    when the app's result backend is tasktrail's (another backend keeps its own)."""
    from celery import current_app

    backend = current_app.backend
    if getattr(backend, "records_runs", False) and hasattr(backend, "get_key_for_task"):
        key = backend.get_key_for_task(run_id)
        return (key.decode() if isinstance(key, bytes) else str(key)), "d"
    return "", ""


def on_before_task_publish(
    sender: str | None = None,
    body: Any = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    if not headers or "id" not in headers:
        return  # task protocol 1 is not supported; Celery 5 defaults to protocol 2
    name = naming.run_name(str(headers.get("task") or sender or ""), headers.get("shadow"))
    if not is_tracked(name):
        return
    run_id = str(headers["id"])
    now = time.time()
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ([], {})
    )
    # enqueue()'s own context; else the bound owner (owned_by) or the request's user.
    context = publish_context.get() or ownership.current()
    create = {
        "id": run_id,
        "task": name,
        "enqueued_at": stamp(now),
        "queue": routing_key or "",
        "parent": str(headers.get("parent_id") or ""),
        "root": str(headers.get("root_id") or ""),
        "group": str(headers.get("group") or ""),
        "broker": sweep.broker_id(),  # whose workers may judge the message lost
        **_stored_arguments(name, list(args), dict(kwargs)),
        **traces.trace_fields(headers.get),  # when a tracer injected its header first
        **context,
    }
    eta = _epoch(headers.get("eta"))
    fields = {"next_attempt_at": stamp(eta)} if eta else {}
    replaced = bool(headers.get("replaced_task_nesting"))
    if replaced and (tracker := reporting.current()) is not None:
        tracker.replaced = True  # this thread's task is being replaced: its run goes on
    # A publish that is not Celery's retry nor a replacement is a new run, even under
    # an id used before (a new generation of it).
    flags = "r" if replaced else ("f" if not int(headers.get("retries") or 0) else "")
    meta_key, reset = _result_key(run_id)
    try:
        applied = submit(
            run_id,
            "publish",
            status=Status.READY,
            fields=fields,
            create=create,
            events=[_state_event(run_id, task=name, next_attempt_at=eta)],
            now=now,
            parent_id=create["parent"],
            generation=_generation(headers.get(GENERATION_HEADER)),
            flags=flags + reset,
            meta=CeleryMeta(meta_key, "") if meta_key else None,
        )
    except redis.RedisError as exc:  # Redis down: never block the publish
        defer(run_id, "publish", {"status": Status.READY, "fields": fields, "create": create,
                                  "now": now, "parent_id": create["parent"], "flags": "p"},
              exc)  # fmt: skip
        return
    headers[GENERATION_HEADER] = applied.generation


def _attempt(task: Any) -> int:
    return int(getattr(task.request, "retries", 0) or 0) + 1


def _run_name(task: Any, request: Any) -> str:
    """The run's name (see :mod:`tasktrail.naming`). ``Task.apply()`` (eager) drops the
    shadow that ``apply_async`` computed, so ask the task's ``shadow_name`` hook again."""
    shadow = getattr(request, "shadow", None)
    if not shadow and getattr(request, "is_eager", False) and not task.__v2_compat__:
        options = {"headers": getattr(request, "headers", None) or {}}
        shadow = task.shadow_name(request.args or (), request.kwargs or {}, options)
    return naming.run_name(task.name, shadow)


def on_task_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    name = _run_name(task, request)
    if not is_tracked(name):
        return
    attempt = _attempt(task)
    now = time.time()
    delivery = getattr(request, "delivery_info", None) or {}
    worker = str(getattr(request, "hostname", "") or "")
    eager = bool(getattr(request, "is_eager", False))
    tracker = reporting.begin(
        task_id, attempt, _generation(getattr(request, GENERATION_HEADER, None))
    )
    fields = {"last_attempted_at": stamp(now), "worker": worker, "next_attempt_at": ""}
    tracker.generation = tracker.record(
        "start",
        status=Status.RUNNING,
        fields=fields,
        create={
            "id": task_id,
            "task": name,
            "enqueued_at": stamp(now),
            "started_at": stamp(now),
            "queue": str(delivery.get("routing_key") or ""),
            "parent": str(getattr(request, "parent_id", "") or ""),
            "root": str(getattr(request, "root_id", "") or ""),
            "group": str(getattr(request, "group", "") or ""),
            # The publisher's tracer put its header in the message; ours ran before it
            # there (receivers run in connection order), so the start records it.
            **traces.from_request(request),
            # No publish recorded an eager run's arguments: its start does.
            **(
                _stored_arguments(name, list(request.args or []), dict(request.kwargs or {}))
                if eager
                else {}
            ),
        },
        events=[_state_event(task_id, worker=worker)],
        now=now,
        flags="e" if eager else "",  # eager runs are never published: this is their start
    )


def _mine(run_id: str) -> reporting.Tracker | None:
    """This thread's tracker of ``run_id`` if its outcome is still to be recorded."""
    tracker = reporting.current()
    if tracker is None or tracker.run_id != run_id or tracker.recorded:
        return None
    tracker.flush()
    return tracker


def _origin(tracker: reporting.Tracker) -> outcomes.Origin:
    """This thread's execution of the run (a record Redis lost is rebuilt)."""
    return outcomes.Origin(
        attempt=tracker.attempt, generation=tracker.generation, create={"id": tracker.run_id}
    )


def on_task_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if sender is None or (tracker := _mine(str(sender.request.id))) is None:
        return
    tracker.recorded = True
    outcomes.succeeded(tracker.run_id, result, _origin(tracker))


def on_task_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    if sender is None or request is None or (tracker := _mine(str(request.id))) is None:
        return
    tracker.recorded = True
    exc = reason.exc if isinstance(reason, Retry) and reason.exc is not None else reason
    if isinstance(exc, RunCancelled):  # autoretry_for=(Exception,) must not revive it
        outcomes.ended_with_error(
            tracker.run_id, _origin(tracker), kind=outcomes.error_type(type(exc)),
            message=str(exc), cancelled=True,
        )  # fmt: skip
        return
    when = _epoch(reason.when) if isinstance(reason, Retry) and reason.when is not None else None
    if isinstance(reason, Retry) and isinstance(reason.when, int | float):
        when = time.time() + float(reason.when)
    kind, message, text = "", "", ""
    if isinstance(exc, BaseException):
        kind, message = outcomes.error_type(type(exc)), str(exc)
        text = "".join(tb.format_exception(exc))
    outcomes.retrying(
        tracker.run_id, _origin(tracker), kind=kind, message=message, traceback=text, when=when
    )


def on_task_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    if sender is None or (tracker := _mine(task_id)) is None:
        return
    tracker.recorded = True
    exc = exception if exception is not None else RuntimeError("unknown failure")
    outcomes.ended_with_error(
        task_id,
        _origin(tracker),
        kind=outcomes.error_type(type(exc)),
        message=str(exc),
        traceback=str(getattr(einfo, "traceback", "") or ""),
        cancelled=isinstance(exc, RunCancelled),
    )


def on_task_postrun(
    task_id: str = "", task: Any = None, retval: Any = None, state: str = "", **_: Any
) -> None:
    """The net under every attempt: whatever ended it, the run does not stay RUNNING."""
    tracker = reporting.current()
    if tracker is None or tracker.run_id != task_id:
        return
    reporting.end()
    eager = bool(getattr(getattr(task, "request", None), "is_eager", False))
    if isinstance(retval, Ignore) and str(retval) == REPLACED:
        tracker.replaced = True  # a replacement whose publish carried no nesting header
    if not tracker.recorded and not tracker.replaced:
        tracker.recorded = True
        _settle_unrecorded(tracker, state, retval)
    if eager:
        from . import flusher

        flusher.write_now([task_id])  # no worker flushes an eager run: tests read the row


def _settle_unrecorded(tracker: reporting.Tracker, state: str, retval: Any) -> None:
    origin = _origin(tracker)
    requeued = isinstance(retval, Reject) and bool(getattr(retval, "requeue", False))
    if state == states.REJECTED and requeued:
        # Back to its queue: the broker delivers it again, as Celery alone would.
        submit(
            tracker.run_id,
            "store",
            status=Status.READY,
            fields={"worker": ""},
            events=[_state_event(tracker.run_id, reason="requeued")],
            attempt=origin.attempt,
            generation=origin.generation,
            create=origin.create,
        )
    elif state == states.REJECTED:
        outcomes.ended_with_error(
            tracker.run_id, origin, kind=outcomes.error_type(Reject), message=str(retval or ""),
            reason="rejected",
        )  # fmt: skip
    elif state == states.IGNORED:
        outcomes.succeeded(tracker.run_id, None, origin, reason="ignored")
    elif state == states.SUCCESS:
        outcomes.succeeded(tracker.run_id, retval, origin)
    elif isinstance(retval, BaseException):
        outcomes.ended_with_error(
            tracker.run_id, origin, kind=outcomes.error_type(type(retval)), message=str(retval),
            cancelled=isinstance(retval, RunCancelled),
        )  # fmt: skip


def on_task_revoked(
    sender: Any = None,
    request: Any = None,
    expired: bool = False,
    terminated: bool = False,
    **_: Any,
) -> None:
    """With tasktrail's backend, Celery stores the revoke itself (``mark_as_revoked``)
    and this is refused as a repeat; with another backend, it records it."""
    if request is None or (sender is not None and not is_tracked(sender.name)):
        return
    reason = "expired" if expired else ("terminated" if terminated else "revoked")
    outcomes.ended_with_error(
        str(request.id),
        outcomes.Origin(create={"id": str(request.id)}),
        kind="celery.exceptions.TaskRevokedError",
        message=reason,
        reason=reason,
        cancelled=True,
    )


def on_task_unknown(
    name: str = "", id: str = "", exc: BaseException | None = None, **_: Any
) -> None:
    """A message for a task no worker has registered: fail it honestly instead of PENDING."""
    if not id or not is_tracked(name):
        return
    from celery.exceptions import NotRegistered

    outcomes.ended_with_error(
        id,
        outcomes.Origin(create={"id": id, "task": name, "enqueued_at": stamp(time.time())}),
        kind=outcomes.error_type(NotRegistered),
        message=repr(name),
        reason="not_registered",
    )


def on_worker_init(sender: Any = None, **_: Any) -> None:
    from . import connection, workers

    connection.in_worker()
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


def on_worker_setup(sender: Any = None, **kwargs: Any) -> None:
    from . import queue_controls  # paused queues and rate limits, before consuming starts

    queue_controls.on_worker_setup(sender, **kwargs)


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
        (signals.task_postrun, on_task_postrun),
        (signals.task_revoked, on_task_revoked),
        (signals.task_unknown, on_task_unknown),
        (signals.worker_init, on_worker_init),
        (signals.celeryd_after_setup, on_worker_setup),
        (signals.worker_ready, on_worker_ready),
        (signals.worker_shutdown, on_worker_shutdown),
    ]
    for signal, receiver in pairs:
        signal.connect(receiver, weak=False, dispatch_uid=f"tasktrail.{receiver.__name__}")  # type: ignore[call-overload]
