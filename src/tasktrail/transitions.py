"""Every change to a run goes through :func:`apply`: one conditional Lua call in Redis.

The script refuses changes to finished runs and late signals from earlier attempts,
so out-of-order Celery signals can never move a run backwards.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import redis
from redis.commands.core import Script
from redis.exceptions import RedisClusterException

from . import journal, keys
from .conf import settings
from .connection import get_redis, redis_url
from .histograms import BOUNDS

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
    base = keys.base_of(run_id, prefix)
    run_key = keys.run_hash(run_id, prefix)
    parent_key = keys.run_hash(parent_id or run_id, prefix)
    meta_key = meta.key if meta is not None else keys.celery_meta(run_id)
    inherited = "{}"
    if keys.clustered():
        # One slot per script: what a new run would inherit from its parent (in another
        # shard) is read first and handed over; the script takes it only where it would
        # have read the parent's record. Celery's results are never on the cluster (its
        # Redis backend cannot run there: backend.py), so no meta goes with the run.
        flags = flags.replace("d", "") + "c"
        if parent_key != run_key and "owner" not in (create or {}):
            inherited = dumps(_inherited(client, parent_key))
        parent_key = meta_key = run_key
        meta = None
    result = _script(client)(
        keys=[
            run_key,
            keys.run_stream(run_id, prefix),
            keys.firehose_stream(base),
            keys.dirty_set(base),
            parent_key,
            meta_key,
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
            base,
            conf["STREAM_MAXLEN"],
            conf["SUBJECT_STREAM_MAXLEN"],
            max(1, int(conf["FIREHOSE_MAXLEN"]) // keys.shards()),  # one firehose per shard
            conf["STREAM_TTL"],
            conf["FLUSH_DELAY"],
            meta.value if meta is not None else "",
            meta.ttl if meta is not None else 0,
            "" if generation is None else generation,
            flags + ("j" if journal.enabled else ""),  # j: the finished record for it
            BOUNDS,
            inherited,
        ],
    )
    ids, cancel, gen, ok, finished, for_subject = (*result, None, None)[:6]
    if not ok:
        logger.debug("tasktrail: %s of run %s refused (finished or stale)", op, run_id)
    elif finished:
        kept = (meta.key, meta.value, meta.ttl) if meta is not None else None
        journal.remember(redis_url(), prefix, run_id, finished, kept)
    if for_subject:
        try:
            _append_to_subject(client, prefix, json.loads(for_subject), conf)
        except (redis.RedisError, RedisClusterException) as exc:
            # The transition is in: raising would defer it and replay it (twice applied).
            logger.warning("tasktrail: run %s's events not added to its subject: %s", run_id, exc)
    return Applied(
        [i.decode() if isinstance(i, bytes) else str(i) for i in ids],
        bool(cancel),
        int(gen),
        bool(ok),
    )


def _inherited(client: redis.Redis, parent_key: str) -> dict[str, str]:
    """The owner, team and subject a new run takes from its parent's record."""
    names = ("owner", "team", "subject")
    values: Any = client.hmget(parent_key, names)
    return {n: v.decode() for n, v in zip(names, values, strict=True) if v is not None}


# A subject's stream on a Redis Cluster: appended after the run's transition, which
# returned the events (the stream is in another slot). KEYS[1] the subject stream;
# ARGV[1] maxlen, ARGV[2] ttl, ARGV[3] channel, ARGV[4] owner, ARGV[5] team, then
# kind and body pairs. If Redis fails between the two calls the subject's stream
# misses these events; the run's own stream and record have them.
_SUBJECT_APPEND = """
for i = 6, #ARGV, 2 do
  local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[i],
    'data', ARGV[i + 1], 'owner', ARGV[4], 'team', ARGV[5])
  redis.call('PUBLISH', ARGV[3], sid .. '\31' .. ARGV[i] .. '\31' .. ARGV[i + 1] .. '\31' ..
    ARGV[4] .. '\31' .. ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


def _append_to_subject(
    client: redis.Redis, prefix: str, found: dict[str, Any], conf: dict[str, Any]
) -> None:
    subject = str(found["subject"])
    stream = keys.subject_stream(subject, prefix)
    pairs = [part for kind, body in found["events"] for part in (kind, body)]
    if not pairs:
        return
    client.eval(
        _SUBJECT_APPEND, 1, stream, conf["SUBJECT_STREAM_MAXLEN"], conf["STREAM_TTL"],
        keys.channel(stream), found.get("owner") or "", found.get("team") or "", *pairs,
    )  # fmt: skip


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


def _reset_in_child() -> None:
    """A forked child (a prefork pool process) owns none of its parent's backlog (the
    parent replays it) and gets a new lock: the parent's replayer may hold the old one
    at the fork, and it would stay held in the child for ever."""
    global _backlog_lock, _replayer, _down_until
    _backlog_lock = threading.RLock()
    _backlog.clear()
    _replayer = None
    _down_until = 0.0


os.register_at_fork(after_in_child=_reset_in_child)


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
