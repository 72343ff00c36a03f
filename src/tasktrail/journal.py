"""The last state of each run this process finished, kept until the database surely has it.

A finished run is durable once the flusher has written it, about a second after Redis
took it. A Redis that keeps nothing on disk and restarts within that second (or a
Sentinel failover to a replica that had not received it) forgets it, and the database
row would stay READY or RUNNING for ever.

So the transition script hands back the whole record of a run it has just finished, and
the process keeps it for :func:`window` seconds. A watcher thread asks Redis who it is
(``INFO server``'s ``run_id``, which a restart or a failover changes; a key of ours where
``INFO`` is not allowed). When that changes, the kept records go to the database as the
flusher would have written them: each with the version Redis gave it, through the
flusher's upsert, where a newer row wins. So a late or repeated replay can never move a
row backwards, and a replay is never more than what the flusher would have done.
Celery's own result meta, kept beside the record, is put back when missing.

Only final states are kept: a run Redis forgot while it was still waiting or running
rebuilds its record at its next transition.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from . import cluster, keys
from .conf import settings
from .sentinel import redact

logger = logging.getLogger("tasktrail")

LIMIT = 50_000
MAX_BYTES = 64 * 1024 * 1024  # records are whole hashes: a result may be 256 KB
WATCH_EVERY = 1.0
# Off in a process that must never write rows from a thread of its own (a test runner
# whose tests own the database: tests/conftest.py turns it off there).
enabled = True
# Kept this long at most while their Redis cannot be reached (a server gone for good).
UNREACHABLE_LIMIT = 600.0


@dataclass(frozen=True, slots=True)
class Kept:
    at: float  # time.monotonic() when Redis took it
    url: str
    prefix: str
    run_id: str
    record: str  # the run's hash as JSON, as the flusher reads it
    meta: tuple[str, str | bytes, int] | None  # Celery's result key, value, ttl


_entries: deque[Kept] = deque()
_bytes = 0
_dropped_at = 0.0
_lock = threading.Lock()
_watcher: threading.Thread | None = None
_identities: dict[str, str] = {}
_clients: dict[str, redis.Redis] = {}


def _reset_in_child() -> None:
    """A forked child (a prefork pool process) starts with nothing kept and a new lock:
    the parent's watcher may hold the old one at the fork, for ever in the child."""
    global _lock, _watcher, _bytes
    _lock = threading.Lock()
    _watcher = None
    _bytes = 0
    _entries.clear()
    _identities.clear()
    _clients.clear()


os.register_at_fork(after_in_child=_reset_in_child)


def window() -> float:
    """Seconds a finished record is kept: well past the time the flusher needs."""
    return max(10.0, 4 * (float(settings.FLUSH_INTERVAL) + float(settings.FLUSH_DELAY)))


def remember(
    url: str, prefix: str, run_id: str, record: str, meta: tuple[str, str | bytes, int] | None
) -> None:
    """Keep the record of a run Redis has just finished (see the module's docstring)."""
    global _watcher, _bytes, _dropped_at
    if not enabled:
        return
    entry = Kept(time.monotonic(), url, prefix, run_id, record, meta)
    with _lock:
        _entries.append(entry)
        _bytes += _size(entry)
        dropped = 0
        while len(_entries) > LIMIT or _bytes > MAX_BYTES:
            _bytes -= _size(_entries.popleft())
            dropped += 1
        if dropped and time.monotonic() - _dropped_at > 60:
            _dropped_at = time.monotonic()
            logger.warning(
                "tasktrail: the journal of finished runs is full (%d runs, %d bytes); the "
                "oldest are forgotten before the window ends", LIMIT, MAX_BYTES,
            )  # fmt: skip
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, name="tasktrail-journal", daemon=True)
            _watcher.start()


def _size(entry: Kept) -> int:
    return len(entry.record) + (len(entry.meta[1]) if entry.meta is not None else 0)


def _watch() -> None:
    """Check each Redis's identity at once, then every second while anything is kept;
    stop when nothing is (the next finished run starts a new watcher)."""
    global _watcher
    failing_since: float | None = None
    reported_at = 0.0
    while True:
        try:
            check()
            failing_since = None
        except Exception:
            now = time.monotonic()
            if failing_since is None or now - reported_at >= 60:  # not a traceback a second
                logger.exception("tasktrail: the journal's watcher failed; it tries again")
                reported_at = now
            failing_since = failing_since or now
        finally:
            from django.db import connections

            connections.close_all()  # this thread's own; a replay may have opened one
        time.sleep(WATCH_EVERY)
        with _lock:
            if not _entries:
                _watcher = None  # identities stay: a restart meanwhile is still noticed
                return


def _client(url: str) -> redis.Redis:
    """A client of its own that fails at once: no retry (redis-py's jittered backoff
    draws from ``random``, which belongs to the application), short timeouts."""
    from .connection import _sync_pool

    client = _clients.get(url)
    if client is None:
        no_retry = Retry(NoBackoff(), 0)
        options = {"socket_connect_timeout": 1, "socket_timeout": 2, "retry": no_retry}
        if cluster.is_cluster_url(url):
            client = _clients[url] = cluster.client(url, options)
        else:
            client = _clients[url] = redis.Redis(
                connection_pool=_sync_pool(url, options), retry=no_retry
            )
    return client


def identity(client: redis.Redis, prefix: str) -> str:
    """Who this Redis is: its ``run_id`` (new at every start, and another server's after a
    failover), or a token kept under our prefix where ``INFO`` is refused. A cluster's
    is every master's: a failover or a restart of any one changes it."""
    try:
        if isinstance(client, RedisCluster):
            masters: Any = client.info("server", target_nodes=RedisCluster.PRIMARIES)
            return "run:" + ",".join(sorted(str(i["run_id"]) for i in masters.values()))
        info: Any = client.info("server")
        return f"run:{info['run_id']}"
    except redis.ResponseError:
        key = f"{prefix}:epoch"
        client.set(key, uuid.uuid4().hex, nx=True)
        token: Any = client.get(key)
        return f"key:{token.decode() if isinstance(token, bytes) else token}"


def check() -> int:
    """Compare each Redis's identity with the last one seen; where it changed, write
    what was kept for it to the database. Then forget what is older than
    :func:`window`. Returns how many records were written."""
    with _lock:
        targets = list(dict.fromkeys((entry.url, entry.prefix) for entry in _entries))
    written = 0
    settled: set[str] = set()  # answered, and anything it lost is in the database now
    try:
        for url, prefix in targets:
            try:
                now_is = identity(_client(url), prefix)
            except redis.RedisError:
                continue  # unreachable: keep its records until it answers again
            was = _identities.get(url)
            if was is not None and was != now_is:
                with _lock:
                    kept = [e for e in _entries if e.url == url]
                logger.warning(
                    "tasktrail: Redis at %s restarted or failed over; writing the %d finished "
                    "run(s) this process kept to the database (the flusher may not have)",
                    redact(url), len(kept),
                )  # fmt: skip
                written += restore(kept)  # if the database refuses: again next round
            _identities[url] = now_is
            settled.add(url)
    finally:
        _forget_written(settled)
    return written


def _forget_written(settled: set[str]) -> None:
    """Forget records past the window that the flusher has written (their run left its
    dirty set: during a database outage it stays, and so do they); records for a Redis
    that did not answer are kept up to ``UNREACHABLE_LIMIT``."""
    global _bytes
    now = time.monotonic()
    with _lock:
        old = [e for e in _entries if e.url in settled and now - e.at >= window()]
    unwritten: set[tuple[str, str]] = set()
    by_target: dict[tuple[str, str], list[Kept]] = {}
    for entry in old:
        by_target.setdefault((entry.url, entry.prefix), []).append(entry)
    for (url, prefix), entries in by_target.items():
        try:
            pipe = _client(url).pipeline(transaction=False)
            for entry in entries:
                pipe.zscore(keys.dirty_set(keys.base_of(entry.run_id, prefix)), entry.run_id)
            scores = pipe.execute()
        except redis.RedisError:
            scores = [0.0] * len(entries)  # not known: keep them
        unwritten |= {(url, e.run_id) for e, score in zip(entries, scores, strict=True) if score}
    with _lock:
        survivors = [
            e
            for e in _entries
            if (e.url, e.run_id) in unwritten
            or now - e.at < (window() if e.url in settled else UNREACHABLE_LIMIT)
        ]
        if len(survivors) != len(_entries):
            _entries.clear()
            _entries.extend(survivors)
            _bytes = sum(_size(e) for e in survivors)


# Put a finished record back where Redis has none or an older one (a promoted replica
# that missed the end): else reads would show the older state, and the sweep or an
# operator acting on it would write a newer version over the restored row.
# KEYS[1] run hash, KEYS[2] waiting set; ARGV[1] record JSON, ARGV[2] ttl, ARGV[3] run
# id, ARGV[4] the run's key base (keys.py). Returns 1 if the record was put back.
_PUT_BACK = """
local record = cjson.decode(ARGV[1])
local have = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
if have >= (tonumber(record['version'] or '0') or 0) then return 0 end
local flat = {}
for k, v in pairs(record) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
if record['worker'] and record['worker'] ~= '' then
  redis.call('SREM', ARGV[4] .. ':active:' .. record['worker'], ARGV[3])
end
return 1
"""


def restore(kept: list[Kept]) -> int:
    """Put these records back into Redis where it holds none or an older one, with
    Celery's result meta, then write them to the database (the newest of each run; a
    newer row wins). Returns how many runs were written."""
    from . import flusher

    newest: dict[str, tuple[Kept, dict[str, Any]]] = {}
    for entry in kept:
        raw = {**json.loads(entry.record), "id": entry.run_id}
        old = newest.get(entry.run_id)
        if old is None or int(raw.get("version") or 0) >= int(old[1].get("version") or 0):
            newest[entry.run_id] = (entry, raw)
    ttl = int(settings.STREAM_TTL)
    for entry, raw in newest.values():
        try:
            client = _client(entry.url)
            base = keys.base_of(entry.run_id, entry.prefix)
            put_back = client.eval(
                _PUT_BACK, 2, keys.run_hash(entry.run_id, entry.prefix),
                keys.waiting_set(base), json.dumps(raw), ttl, entry.run_id, base,
            )  # fmt: skip
            if entry.meta is not None:
                key, value, meta_ttl = entry.meta
                # Over an older state a promoted replica kept; never over a newer one.
                client.set(key, value, ex=meta_ttl or None, nx=not put_back)
        except redis.RedisError:
            logger.warning("tasktrail: run %s not put back into Redis", entry.run_id)
    flusher.write_rows([flusher.row_of(raw) for _, raw in newest.values()])
    return len(newest)


def size() -> int:
    return len(_entries)
