"""``enqueue()``: publish a Celery task as a tracked run, validated at the call site."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any, overload

from asgiref.sync import sync_to_async
from celery import current_app
from celery.canvas import Signature, group
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from kombu.utils.json import dumps as kombu_dumps

from . import ids, keys, ownership
from .canvas import RunGroup, enqueue_canvas
from .conf import settings
from .connection import get_redis
from .ownership import context_of
from .receivers import publish_context
from .records import Progress, to_datetime
from .runs import Run, find_run
from .status import FINISHED, Status
from .tracked import is_tracked

# Idempotency keys map to run ids deterministically, so a key used inside a
# transaction that rolls back, and used again, still names one run.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d8a52-3c4b-4f0e-9a57-7c1f3e2b9d10")


def run_id_for_key(idempotency_key: str) -> str:
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key))


def _signature_target(task: Any) -> Callable[..., Any]:
    run = getattr(task, "run", None)
    if run is None:
        raise TypeError(f"{task!r} is not a Celery task (it has no run()).")
    return run  # type: ignore[no-any-return]


def validate_arguments(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` naming the argument that does not fit the task or JSON."""
    try:
        signature = inspect.signature(_signature_target(task))
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{task.name}{signature}: {exc}") from None
    named: list[tuple[str, Any]] = [(f"args[{i}]", v) for i, v in enumerate(args)]
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs).arguments
            named = [(f"argument {k!r}", v) for k, v in bound.items()]
        except TypeError:
            pass
    named += [(f"argument {k!r}", v) for k, v in kwargs.items() if signature is None]
    for label, value in named:
        try:
            kombu_dumps(value, allow_nan=False)
        except ValueError as exc:  # NaN or Infinity: Python writes them, JSON has no word
            raise ValueError(
                f"{task.name}: {label} holds a number JSON cannot carry ({exc}); the "
                "database and browsers refuse it. Send None, or the number as a string "
                "('nan', 'inf'), instead."
            ) from None
        except TypeError as exc:
            raise TypeError(
                f"{task.name}: {label} ({type(value).__name__}) cannot be sent as JSON: {exc}. "
                "Pass ids or plain data instead of objects."
            ) from None


# "One active run per key": the key names the current run until that run finishes.
# The key may go from a finished holder (or none) to this run only if it still names
# that holder: compare and set, since the holder's record may be in another slot (a
# Redis Cluster) and a script may not read it. A finished run never becomes active
# again, so a holder seen finished stays replaceable.
_SWAP_IF_STILL = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


def _claim_while_active(key: str, run_id: str) -> str:
    """Claim ``key`` for ``run_id`` unless another run holding it is still active;
    return the run id that holds it now."""
    client = get_redis()
    name = f"{keys.prefix()}:active-key:{key}"
    while True:  # another claim changed the key between the reads: look again
        raw: Any = client.get(name)
        holder = raw.decode() if raw else ""
        if holder:
            status: Any = client.hget(keys.run_hash(holder), "status")
            if status is not None and status.decode() not in FINISHED:
                return holder
        ttl = int(settings.IDEMPOTENCY_TTL)
        if client.eval(_SWAP_IF_STILL, 1, name, holder, run_id, ttl):
            return run_id


def _claim(idempotency_key: str, run_id: str) -> bool:
    """Atomically claim the key for this run (Redis ``SET NX``, never check-then-insert)."""
    from .models import TaskRun

    if not get_redis().set(
        keys.idempotency(idempotency_key), run_id, nx=True, ex=int(settings.IDEMPOTENCY_TTL)
    ):
        return False
    # Redis may have forgotten an old key whose run the database still holds.
    return not TaskRun.objects.filter(pk=run_id).exists()


def _context(owner: Any, team: str | None, subject: str | models.Model | None) -> dict[str, str]:
    """The explicit context of this call over the bound one (``owned_by``, a request)."""
    return {**ownership.current(), **context_of(owner, team, subject)}


@overload
def enqueue(
    task: group,
    /,
    *,
    owner: Any = ...,
    team: str | None = ...,
    subject: str | models.Model | None = ...,
    **celery_options: Any,
) -> RunGroup: ...


@overload
def enqueue(
    task: Any,
    /,
    *args: Any,
    owner: Any = ...,
    team: str | None = ...,
    subject: str | models.Model | None = ...,
    idempotency_key: str | None = ...,
    key_scope: str = ...,
    **celery_options: Any,
) -> Run: ...


def enqueue(
    task: Any,
    /,
    *args: Any,
    owner: Any = None,
    team: str | None = None,
    subject: str | models.Model | None = None,
    idempotency_key: str | None = None,
    key_scope: str = "forever",
    **celery_options: Any,
) -> Run | RunGroup:
    """Publish ``task(*args, **kwargs)`` as a tracked run and return its handle.

    Keyword arguments for the task go in ``kwargs={...}``; every other keyword is a
    Celery option (``countdown``, ``eta``, ``queue``, ``priority``, ...). Inside a
    transaction the run is published when it commits (and never, if it rolls back).
    The same ``idempotency_key`` always gives the same run and publishes nothing new;
    with ``key_scope="active"`` it gives the same run only while that run is unfinished
    (one active run per key, e.g. a welcome e-mail per user). ``task`` may also be a
    signature, a chain (the handle is its first step's run) or a group
    (a :class:`~tasktrail.canvas.RunGroup`).
    """
    if not apps.is_installed("tasktrail"):
        raise ImproperlyConfigured("Add 'tasktrail' to INSTALLED_APPS to use tasktrail.enqueue().")
    if isinstance(task, Signature):
        if type(task) is Signature:  # a plain signature: its task with its arguments
            celery_options = {**task.options, **celery_options}
            celery_options["kwargs"] = {**task.kwargs, **dict(celery_options.get("kwargs") or {})}
            args = (*task.args, *args)
            task = current_app.tasks[str(task.task)]
        else:
            if args or idempotency_key is not None:
                raise TypeError(
                    "With a chain or group, put arguments in its signatures; no idempotency_key."
                )
            return enqueue_canvas(task, _context(owner, team, subject), celery_options)
    if not hasattr(task, "apply_async"):
        raise TypeError(f"enqueue() needs a Celery task, got {task!r}.")
    if not is_tracked(task.name):
        from .exceptions import NotTracked

        raise NotTracked(
            f"{task.name} matches TASKTRAIL['EXCLUDE_TASKS']; call apply_async() instead."
        )
    kwargs = dict(celery_options.pop("kwargs", None) or {})
    if "args" in celery_options:
        raise TypeError("Pass the task's positional arguments to enqueue() directly, not args=.")
    validate_arguments(task, args, kwargs)
    if idempotency_key is not None and "task_id" in celery_options:
        raise TypeError("Pass either idempotency_key= or task_id=, not both.")
    if key_scope not in ("forever", "active"):
        raise ValueError(f"key_scope must be 'forever' or 'active', not {key_scope!r}.")
    active_key = (
        str(idempotency_key) if idempotency_key is not None and key_scope == "active" else None
    )
    if active_key is not None:
        idempotency_key = None  # the key is held in Redis only; each run gets its own id
    run_id = str(celery_options.pop("task_id", None) or uuid.uuid4())
    if idempotency_key is not None:
        run_id = run_id_for_key(str(idempotency_key))
    if not ids.is_valid(run_id):
        raise ValueError(
            f"task_id must be 1 to {ids.MAX_LENGTH} printable characters, got {run_id!r}."
        )

    context = _context(owner, team, subject)
    if idempotency_key is not None:
        context["idem"] = str(idempotency_key)

    def publish() -> bool:
        if idempotency_key is not None and not _claim(str(idempotency_key), run_id):
            return False
        if active_key is not None and _claim_while_active(active_key, run_id) != run_id:
            return False
        token = publish_context.set(context)
        try:
            task.apply_async(args=args, kwargs=kwargs, task_id=run_id, **celery_options)
        except BaseException:
            if idempotency_key is not None:  # nothing was sent: free the key for a new try
                get_redis().delete(keys.idempotency(str(idempotency_key)))
            raise
        finally:
            publish_context.reset(token)
        return True

    snapshot = Run(
        id=run_id,
        task=task.name,
        status=Status.READY,
        progress=Progress(),
        enqueued_at=to_datetime(str(time.time())),
        owner_id=context.get("owner"),
        team=context.get("team", ""),
        subject=context.get("subject", ""),
        idempotency_key=context.get("idem"),
        args=list(args),
        kwargs=kwargs,
    )
    if idempotency_key is not None and (existing := find_run(run_id)) is not None:
        return existing
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(publish)
        return snapshot
    if publish():
        return snapshot
    if active_key is not None:  # the key's active run answers instead
        holder = get_redis().get(f"{keys.prefix()}:active-key:{active_key}")
        active = find_run(holder.decode()) if isinstance(holder, bytes) else None
        if active is not None:
            return active
    # Another call holds the key: that call's run is this run.
    return find_run(run_id) or snapshot


async def aenqueue(task: Any, /, *args: Any, **options: Any) -> Run | RunGroup:
    """Async twin of :func:`enqueue`."""
    # Thread-sensitive (Django's default), so the database connection an idempotency
    # claim opens is the request's, closed with it.
    return await sync_to_async(enqueue)(task, *args, **options)
