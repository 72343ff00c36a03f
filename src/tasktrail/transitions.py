"""Every change to a run goes through :func:`apply`: one conditional Lua call in Redis.

The script refuses changes to finished runs and late signals from earlier attempts,
so out-of-order Celery signals can never move a run backwards.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import redis
from redis.commands.core import Script

from . import keys
from .conf import settings
from .connection import get_redis

logger = logging.getLogger("tasktrail")

Op = Literal["publish", "start", "retry", "finish", "cancel", "progress", "feed", "store"]
ANY_ATTEMPT = -1

_SCRIPT_SOURCE = resources.files("tasktrail").joinpath("lua/transition.lua").read_text()
_scripts: dict[int, Script] = {}


def _script(client: redis.Redis) -> Script:
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_SCRIPT_SOURCE)
    return script


@dataclass(frozen=True, slots=True)
class Applied:
    """What the script did: its events' ids, whether a cancel is pending, the run's
    generation, and whether the change was made at all (``ok``)."""

    ids: list[str]
    cancel_requested: bool
    generation: int = 1
    ok: bool = True


@dataclass(frozen=True, slots=True)
class CeleryMeta:
    """Celery's own result meta to store with a transition (the result backend)."""

    key: str
    value: str | bytes
    ttl: int = 0


def dumps(value: Any, default: Callable[[Any], Any] = str) -> str:
    """JSON as both databases and every browser accept it: NaN and Infinity (not JSON)
    become ``null``. A task's progress or feed data never fails the task for that;
    ``enqueue()`` refuses such arguments before they are sent. ``default`` renders what
    JSON has no word for (its text, by default)."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, default=default, allow_nan=False
        )
    except ValueError:
        return json.dumps(finite(value), separators=(",", ":"), ensure_ascii=False, default=default)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in lists, tuples, dicts) replaced
    by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def stamp(value: float | None) -> str:
    """A timestamp as stored in the hot record: epoch seconds, or '' for none."""
    return "" if value is None else repr(round(value, 6))


def apply(
    run_id: str,
    op: Op,
    *,
    attempt: int = 0,
    status: str = "",
    fields: Mapping[str, str] | None = None,
    create: Mapping[str, str] | None = None,
    events: Iterable[tuple[str, Mapping[str, Any] | str]] = (),
    now: float | None = None,
    parent_id: str = "",
    generation: int | None = None,
    flags: str = "",
    meta: CeleryMeta | None = None,
) -> Applied | None:
    """Apply one transition; return what happened, or ``None`` if it was refused.

    An event's data is a mapping, or a JSON text already encoded. ``generation`` is
    the one of the message the change comes from (a write from an earlier publish of
    the same id is refused); ``flags`` are the script's (see ``lua/transition.lua``);
    ``meta`` is Celery's result meta, stored in the same call.

    Raises ``redis.RedisError`` when Redis cannot be reached (at once, for a moment after
    a failure); callers on a task's path use :func:`safely` or :func:`defer`.
    """
    applied = submit(
        run_id, op, attempt=attempt, status=status, fields=fields, create=create,
        events=events, now=now, parent_id=parent_id, generation=generation, flags=flags,
        meta=meta,
    )  # fmt: skip
    return applied if applied.ok else None


def submit(run_id: str, op: Op, **kwargs: Any) -> Applied:
    """:func:`apply`, also telling what a refusal means (``ok`` is false): a task's
    tracker needs to know whether its run was cancelled or merely moved on."""
    global _down_until
    if time.monotonic() < _down_until:
        raise redis.ConnectionError("Redis was unreachable a moment ago; not retrying yet.")
    try:
        if _backlog:
            with _backlog_lock:
                _replay()  # what waited for Redis goes first, to keep the order
        return _call(run_id, op, **kwargs)
    except redis.RedisError:
        _down_until = time.monotonic() + RETRY_AFTER
        raise


def _call(
    run_id: str,
    op: Op,
    attempt: int = 0,
    status: str = "",
    fields: Mapping[str, str] | None = None,
    create: Mapping[str, str] | None = None,
    events: Iterable[tuple[str, Mapping[str, Any] | str]] = (),
    now: float | None = None,
    parent_id: str = "",
    generation: int | None = None,
    flags: str = "",
    meta: CeleryMeta | None = None,
) -> Applied:
    client = get_redis()
    when = time.time() if now is None else now
    conf = settings.snapshot()  # one settings lookup per call, not eleven
    prefix = str(conf["KEY_PREFIX"])
    result = _script(client)(
        keys=[
            keys.run_hash(run_id, prefix),
            keys.run_stream(run_id, prefix),
            keys.firehose_stream(prefix),
            keys.dirty_set(prefix),
            keys.run_hash(parent_id or run_id, prefix),
            meta.key if meta is not None else keys.celery_meta(run_id),
        ],
        args=[
            run_id,
            op,
            attempt,
            status,
            repr(when),
            dumps(dict(fields or {})),
            dumps(dict(create or {})),
            dumps(
                [[kind, data if isinstance(data, str) else dumps(data)] for kind, data in events]
            ),
            prefix,
            conf["STREAM_MAXLEN"],
            conf["SUBJECT_STREAM_MAXLEN"],
            conf["FIREHOSE_MAXLEN"],
            conf["STREAM_TTL"],
            conf["FLUSH_DELAY"],
            meta.value if meta is not None else "",
            meta.ttl if meta is not None else 0,
            "" if generation is None else generation,
            flags,
        ],
    )
    ids, cancel, gen, ok = result
    if not ok:
        logger.debug("tasktrail: %s of run %s refused (finished or stale)", op, run_id)
    return Applied(
        [i.decode() if isinstance(i, bytes) else str(i) for i in ids],
        bool(cancel),
        int(gen),
        bool(ok),
    )


def safely(run_id: str, op: Op, **kwargs: Any) -> Applied | None:
    """:func:`apply`, but through a Redis outage: the change is deferred, not raised."""
    try:
        return apply(run_id, op, **kwargs)
    except redis.RedisError as exc:
        defer(run_id, op, kwargs, exc)
        return None


# While Redis is unreachable: calls fail fast for a moment instead of each waiting on
# a connection, state changes go to the database, and every transition is kept here
# to be replayed, in order, when Redis answers again.
RETRY_AFTER = 1.0
BACKLOG_LIMIT = 50_000
_backlog: deque[tuple[str, Op, dict[str, Any]]] = deque(maxlen=BACKLOG_LIMIT)
_backlog_lock = threading.RLock()
_down_until = 0.0
_replayer: threading.Thread | None = None


def defer(run_id: str, op: Op, kwargs: dict[str, Any], exc: BaseException) -> None:
    """Keep a transition Redis could not take; write a state change to the database."""
    from . import fallback

    kwargs = {**kwargs, "now": kwargs.get("now") or time.time()}
    with _backlog_lock:
        if not _backlog:
            logger.warning("tasktrail: Redis unreachable (%s); recording in the database", exc)
        last = _backlog[-1] if _backlog else None
        if op == "progress" and last is not None and last[0] == run_id and last[1] == "progress":
            _backlog[-1] = (run_id, op, kwargs)  # only the latest progress matters
        else:
            _backlog.append((run_id, op, kwargs))
    fallback.write(
        run_id,
        op,
        attempt=int(kwargs.get("attempt", 0)),
        status=str(kwargs.get("status", "")),
        fields=kwargs.get("fields") or {},
        create=kwargs.get("create") or {},
        now=float(kwargs["now"]),
    )
    _start_replayer()


def _start_replayer() -> None:
    global _replayer
    with _backlog_lock:
        if _replayer is None or not _replayer.is_alive():
            _replayer = threading.Thread(
                target=_replay_until_empty, name="tasktrail-replay", daemon=True
            )
            _replayer.start()


def _replay_until_empty() -> None:
    while True:
        time.sleep(RETRY_AFTER)
        with _backlog_lock:
            try:
                _replay()
            except redis.RedisError:
                continue
            if not _backlog:
                logger.warning("tasktrail: Redis is back; deferred transitions replayed")
                return


def _replay() -> None:
    """Send deferred transitions in order (the lock is held by the caller)."""
    while _backlog:
        run_id, op, kwargs = _backlog[0]
        _call(run_id, op, **kwargs)
        _backlog.popleft()


def pending() -> int:
    """How many transitions wait for Redis in this process."""
    return len(_backlog)
