"""The read API: ``get_run``/``aget_run`` and the :class:`Run` handle.

Redis holds the freshest state of every recent run; the database catches up within
about a second and holds everything once Redis has let a run expire. So reads try
Redis first and fall back to the database (also while Redis is unreachable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import redis

from . import keys
from .connection import PoolExhausted, get_async_redis, get_redis
from .exceptions import RunNotFound
from .records import RunData, decode_hash, fields_from_hash, fields_from_model

if TYPE_CHECKING:
    from .models import TaskRun

logger = logging.getLogger("tasktrail")
_REDIS_DOWN = "tasktrail: %s, reading run %s from the database: %s"


def _why(exc: Exception) -> str:
    return "Redis pool exhausted" if isinstance(exc, PoolExhausted) else "Redis unreachable"


@dataclass(frozen=True, kw_only=True)
class Run(RunData):
    """A snapshot of one run, with methods to refresh it, wait for it and share it."""

    def refresh(self) -> Run:
        return get_run(self.id)

    async def arefresh(self) -> Run:
        return await aget_run(self.id)

    def wait(self, timeout: float = 30.0) -> Run:
        """Block until the run finishes (following its event stream); raise TimeoutError."""
        deadline = time.monotonic() + timeout
        stream = keys.run_stream(self.id)
        last = "$"
        while True:
            run = get_run(self.id)
            if run.is_finished:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Run {self.id} is still {run.status} after {timeout}s.")
            reply: Any = get_redis().xread({stream: last}, block=max(1, int(min(left, 1.0) * 1000)))
            for _, entries in reply or ():
                last = entries[-1][0]

    def token(self, max_age: int | None = None) -> str:
        """A signed token that lets its holder read this run (``?token=``) until it expires."""
        from .access import make_token

        return make_token(self.id, max_age=max_age)


# Dataclass fields a rebuilt hot record may carry, by the hash field that holds them.
_LIVE_FIELDS = {
    "status": "status", "attempts": "attempts", "worker": "worker", "result": "result",
    "error": "error_type", "progress": "p_current", "started_at": "started_at",
    "last_attempted_at": "last_attempted_at", "finished_at": "finished_at",
    "next_attempt_at": "next_attempt_at", "cancel_requested_at": "cancel_requested_at",
    "cancelled_by": "cancelled_by",
}  # fmt: skip


def _from_hash(raw: Any) -> Run | None:
    return Run(**fields_from_hash(decode_hash(raw))) if raw else None


def _merge(raw: Any, row: Run | None) -> Run | None:
    """A hot record without ``task`` was rebuilt after Redis lost it (a restart): lay its
    live fields over the database's row, which holds the rest."""
    if not raw:
        return row
    fields = decode_hash(raw)
    if "task" in fields or row is None:
        return Run(**fields_from_hash({"id": row.id if row else "", **fields}))
    live = fields_from_hash({**fields, "id": row.id})
    return replace(row, **{name: live[name] for name, key in _LIVE_FIELDS.items() if key in fields})


def _from_row(row: TaskRun | None) -> Run | None:
    return None if row is None else Run(**fields_from_model(row))


def find_run(run_id: str) -> Run | None:
    from .models import TaskRun

    try:
        raw = get_redis().hgetall(keys.run_hash(run_id))
    except redis.RedisError as exc:
        logger.warning(_REDIS_DOWN, _why(exc), run_id, exc)
        raw = None
    if raw and b"task" in raw:
        return _from_hash(raw)
    return _merge(raw, _from_row(TaskRun.objects.filter(pk=run_id).first()))


async def afind_run(run_id: str) -> Run | None:
    from .models import TaskRun

    try:
        raw = await get_async_redis().hgetall(keys.run_hash(run_id))
    except redis.RedisError as exc:
        logger.warning(_REDIS_DOWN, _why(exc), run_id, exc)
        raw = None
    if raw and b"task" in raw:
        return _from_hash(raw)
    return _merge(raw, _from_row(await TaskRun.objects.filter(pk=run_id).afirst()))


def get_run(run_id: str) -> Run:
    """The run with this id; raises :class:`~tasktrail.exceptions.RunNotFound`."""
    run = find_run(str(run_id))
    if run is None:
        raise RunNotFound(str(run_id))
    return run


async def aget_run(run_id: str) -> Run:
    """Async twin of :func:`get_run`."""
    run = await afind_run(str(run_id))
    if run is None:
        raise RunNotFound(str(run_id))
    return run
