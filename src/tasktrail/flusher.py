"""Writes changed runs from Redis to the database in batches, behind the hot path.

Every transition marks its run in a sorted set (score: when it became due). A
flusher leases due runs (pushing their score into the future, so a flusher that
dies lets another take over after the lease), bulk-upserts their hot records in
one statement, and releases those whose version did not change meanwhile. The
upsert only overwrites a row with a newer version, so flushers on several
workers never move a run backwards.

Why here and not in the request or task path: one commit per state change caps
throughput at a few hundred runs per second (see docs/benchmarks.md); one
statement per batch of hundreds does not.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from django.db import (
    DatabaseError,
    close_old_connections,
    connections,
    models,
    router,
    transaction,
)

from . import keys
from .columns import full_row
from .conf import settings
from .connection import get_redis
from .fingerprints import digest
from .status import Status

logger = logging.getLogger("tasktrail")

LEASE_SECONDS = 30.0

# Lease due runs (or the runs named after ARGV[4]) and return their hot records in the
# same call: id, JSON of the hash, id, ... One JSON string per run parses in C; an
# HGETALL reply per run is a dozen or more strings for redis-py to parse in Python
# (0.13 ms of CPU per run). "Due" is by the Redis server's clock, which the
# transition script also uses: hosts whose clocks differ agree on it.
_LEASE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ids
if #ARGV > 4 then
  ids = {}
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + tonumber(ARGV[1]), 'LIMIT', 0, ARGV[3])
end
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', now + tonumber(ARGV[2])), id)
  local flat = redis.call('HGETALL', ARGV[4] .. ':run:' .. id)
  local record = {}
  for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
  out[#out + 1] = id
  out[#out + 1] = cjson.encode(record)
end
return out
"""

# Release a run only if its version is still the one written; a newer change
# has already set its score back to "due" (ZADD LT in the transition script).
# ARGV[1] is the key base (keys.py), then run id and version pairs.
_RELEASE = """
local released = 0
for i = 2, #ARGV, 2 do
  local version = redis.call('HGET', ARGV[1] .. ':run:' .. ARGV[i], 'version')
  if (not version) or version == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i]); released = released + 1
  end
end
return released
"""

# A batch that could not be written: due again in ARGV[1] seconds (by the Redis clock),
# unless a change already made it due sooner (LT); a run released meanwhile stays out (XX).
_RETRY_SOON = """
local clock = redis.call('TIME')
local due = tonumber(clock[1]) + tonumber(clock[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', 'LT', string.format('%.6f', due), ARGV[i])
end
return 0
"""
RETRY_SECONDS = 1.0

# Columns a later hot record may lack (a run first seen at its start, say) keep
# what the row already has, unless the record is of a newer generation of the id.
_KEEP_EXISTING = (
    "task", "enqueued_at", "started_at", "owner_id", "team", "subject", "idempotency_key",
    "parent_id", "root_id", "group_id", "args", "kwargs", "queue", "retry_of",
)  # fmt: skip


def row_of(raw: dict[str, str]) -> dict[str, Any]:
    """The database row of a hot record (the hash as the lease script returns it)."""
    row = {**full_row(raw), "flush_error": ""}  # a whole write clears an earlier report
    # Computed here, not in the Lua scripts: the hot path stays as it is (one digest
    # per failed run per batch), and a run failing again gets its new group.
    failed = row["status"] == Status.FAILED
    row["fingerprint"] = (
        digest(row["task"], row["error_type"], row["error_traceback"]) if failed else ""
    )
    return row


def upsert(rows: list[dict[str, Any]]) -> None:
    """Insert or update rows in one statement, keeping newer versions (PostgreSQL, SQLite)."""
    from .models import TaskRun

    if not rows:
        return
    alias = router.db_for_write(TaskRun)
    connection = connections[alias]
    columns = list(rows[0])
    statement = None
    if connection.vendor == "postgresql":
        statement = _as_one_json_parameter(rows, columns, connection)
    if statement is None:
        statement = _as_values(rows, columns, connection)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute(*statement)


@functools.cache
def _text_columns() -> frozenset[str]:
    from .models import TaskRun

    return frozenset(
        str(field.column)
        for field in TaskRun._meta.concrete_fields
        if isinstance(field, models.CharField | models.TextField)
    )


def _on_conflict(columns: list[str], connection: Any) -> str:
    """The upsert's tail: newer versions win; some columns keep what the row has."""
    from .models import TaskRun

    quote = connection.ops.quote_name
    table = quote(TaskRun._meta.db_table)
    texts = _text_columns()
    updates = []
    for name in columns:
        if name == "id":
            continue
        column = quote(name)
        if name in _KEEP_EXISTING:
            generation = quote("generation")
            # An empty text is "not known" too (a row the outage fallback or a rebuilt
            # record began without a task or queue): a later record's value fills it.
            kept = f"NULLIF({table}.{column}, '')" if name in texts else f"{table}.{column}"
            updates.append(
                f"{column} = CASE WHEN {table}.{generation} = excluded.{generation} "
                f"THEN COALESCE({kept}, excluded.{column}) ELSE excluded.{column} END"
            )
        else:
            updates.append(f"{column} = excluded.{column}")
    return (
        f"ON CONFLICT ({quote('id')}) DO UPDATE SET {', '.join(updates)} "
        f"WHERE {table}.{quote('version')} < excluded.{quote('version')}"
    )


def _as_one_json_parameter(
    rows: list[dict[str, Any]], columns: list[str], connection: Any
) -> tuple[str, list[Any]] | None:
    """PostgreSQL: the whole batch as one JSON document, unpacked by
    ``json_populate_recordset`` into the table's own column types.

    Why: with one placeholder per value, psycopg parses a query of thousands of
    placeholders in Python for every batch, and Django prepares every value; that
    was 0.19 ms of CPU per row. One parameter costs one ``json.dumps``.
    Returns None when the batch is not plain JSON (NaN, say): the caller then
    takes the general path.
    """
    from .models import TaskRun

    try:
        document = json.dumps(rows, default=_json_default, allow_nan=False)
    except (TypeError, ValueError):
        return None
    quote = connection.ops.quote_name
    table = quote(TaskRun._meta.db_table)
    names = ", ".join(quote(c) for c in columns)
    sql = (
        f"INSERT INTO {table} ({names}) "
        f"SELECT {names} FROM json_populate_recordset(NULL::{table}, %s::json) "
        + _on_conflict(columns, connection)
    )
    return sql, [document]


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()  # with its offset when aware; naive: the session's zone
    raise TypeError(f"{type(value).__name__} is not JSON")


def _as_values(
    rows: list[dict[str, Any]], columns: list[str], connection: Any
) -> tuple[str, list[Any]]:
    """Any database: a VALUES list, every value prepared by its model field."""
    from .models import TaskRun

    meta = TaskRun._meta
    fields: list[Any] = [
        meta.get_field("owner" if name == "owner_id" else name) for name in columns
    ]
    quote = connection.ops.quote_name
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES {', '.join([placeholders] * len(rows))} " + _on_conflict(columns, connection)
    )
    prepare = [
        _preparer(name, field, connection) for name, field in zip(columns, fields, strict=True)
    ]
    params: list[Any] = []
    for row in rows:
        params.extend(convert(row[name]) for name, convert in zip(columns, prepare, strict=True))
    return sql, params


_PLAIN = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.FloatField,
    models.BooleanField,
)


def _preparer(name: str, field: Any, connection: Any) -> Callable[[Any], Any]:
    """How one column's values become query parameters, chosen once per batch: plain
    values go as they are; dates, JSON and the owner go through the field."""
    if name == "owner_id":
        target = field.target_field
        return lambda value: (
            None if value is None else field.get_db_prep_save(target.to_python(value), connection)
        )
    if isinstance(field, _PLAIN) and not isinstance(field, models.JSONField):
        return lambda value: value
    return lambda value: field.get_db_prep_save(value, connection)


def flush_once(limit: int | None = None, *, everything: bool = False) -> int:
    """Write one batch of due runs (``everything``: of all changed runs) to the database;
    return how many were written."""
    # "everything": changes held back by FLUSH_DELAY too, but not runs under lease.
    ahead = float(settings.FLUSH_DELAY) if everything else 0.0
    return _write(int(limit or settings.FLUSH_BATCH_SIZE), ahead, ())


def write_now(run_ids: list[str]) -> int:
    """Write these runs to the database now, due or not (eager runs: no worker's
    flusher sees them, and a test reads their rows right after the call)."""
    return _write(len(run_ids), 0.0, run_ids)


def _write(batch: int, ahead: float, run_ids: list[str] | tuple[()]) -> int:
    """Lease from each key base's dirty set (one on a single Redis, one per shard on a
    cluster: each lease is a script in one slot, of a share of the batch), write every
    row in one statement, then release per base. A shard whose master does not answer
    (a failover) leaves the others to be written; its error is raised at the end."""
    client = get_redis()
    wanted: dict[str, list[str]] = {}
    if run_ids:
        for run_id in run_ids:
            wanted.setdefault(keys.base_of(run_id), []).append(run_id)
    else:
        wanted = {base: [] for base in keys.bases()}
    share = max(1, batch // len(keys.bases()))
    rows: list[dict[str, Any]] = []
    releases: dict[str, list[str]] = {}
    failed: redis.RedisError | None = None
    for base, named in wanted.items():
        try:
            leased: Any = client.eval(
                _LEASE, 1, keys.dirty_set(base), repr(ahead), repr(LEASE_SECONDS),
                len(named) or share, base, *named,
            )  # fmt: skip
        except redis.RedisError as exc:
            failed = exc
            continue
        release = releases[base] = []
        for index in range(0, len(leased), 2):
            run_id, raw = leased[index].decode(), json.loads(leased[index + 1])
            release += [run_id, raw.get("version", "")]
            if raw:  # gone (expired) otherwise; an id the record lacks is the one leased
                rows.append(row_of({**raw, "id": raw.get("id") or run_id}))
    releases = {base: release for base, release in releases.items() if release}
    if not releases:
        if failed is not None:
            raise failed
        return 0
    try:
        write_rows(rows)
    except Exception:
        # Due again soon, not when the lease ends: the batch lands about a second
        # after the database is back, not up to LEASE_SECONDS later (issue 11, item 4).
        for base, release in releases.items():
            client.eval(_RETRY_SOON, 1, keys.dirty_set(base), repr(RETRY_SECONDS), *release[::2])
        raise
    for base, release in releases.items():
        client.eval(_RELEASE, 1, keys.dirty_set(base), base, *release)
    if failed is not None:
        raise failed
    return len(rows)


def write_rows(rows: list[dict[str, Any]]) -> None:
    """Upsert rows in one statement; if the database refuses the batch but is writable,
    row by row, so that one bad run never blocks another. Raises during an outage."""
    try:
        upsert(rows)
    except DatabaseError:
        if not _database_writable():
            raise  # an outage (or no tables): no row by row against a closed door
        _upsert_each(rows)


# JSON columns a database may refuse (NaN on PostgreSQL, say): replaced on a retry.
_JSON_COLUMNS = ("result", "args", "kwargs")

# Counts of runs the database refused, by kind: ``values_dropped`` (written without
# their JSON values) and ``not_written`` (left in Redis only). Prometheus reads them.
FAILURE_KINDS = ("values_dropped", "not_written")

# A mark on the hot record, unless it expired meanwhile (never a record of one field).
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'flush_error', ARGV[1]) end
"""


def _failures_key() -> str:
    return f"{keys.prefix()}:stats:flush_failures"


def _upsert_each(rows: list[dict[str, Any]]) -> None:
    """A batch failed: write its rows one by one, so one bad run never blocks another.
    A row the database refuses is written again with its JSON columns replaced by a
    note, marked (``flush_error``), counted and named in the log; if even that fails,
    the mark goes on the hot record and the run waits for its next change."""
    written = 0
    refused: list[tuple[dict[str, Any], Exception]] = []
    for row in rows:
        try:
            upsert([row])
            written += 1
        except DatabaseError as refusal:
            refused.append((row, refusal))
    if refused and not written and not _database_writable():
        raise refused[0][1]  # nothing could be written: an outage, not a bad row
    for row, error in refused:
        _write_without_values(row, error)


def _write_without_values(row: dict[str, Any], error: Exception) -> None:
    try:
        upsert([row])  # the database may be back, or the refusal was a passing one
        return
    except DatabaseError as again:
        error = again
    cause = f"{type(error).__name__}: {str(error).strip()[:300]}"
    dropped = [c for c in _JSON_COLUMNS if row.get(c) is not None]
    note = {"unstorable": cause}
    report = f"{', '.join(dropped) or 'nothing'} not stored: {cause}"
    try:
        upsert([{**row, **dict.fromkeys(dropped, note), "flush_error": report}])
        kind = "values_dropped"
        logger.error(
            "tasktrail: run %s written to the database without its %s: %s",
            row["id"], ", ".join(dropped), cause,
        )  # fmt: skip
    except DatabaseError:
        kind, report = "not_written", f"not written to the database: {cause}"
        logger.exception("tasktrail: run %s could not be written to the database", row["id"])
    client = get_redis()
    client.eval(_MARK, 1, keys.run_hash(row["id"]), report)
    client.hincrby(_failures_key(), kind, 1)


def failure_counts() -> dict[str, int]:
    """Runs the database refused, by kind, since Redis started (metrics)."""
    stored: Any = get_redis().hgetall(_failures_key())
    counts = {k.decode(): int(v) for k, v in stored.items()}
    return {kind: counts.get(kind, 0) for kind in FAILURE_KINDS}


def flush_error(run_id: str) -> str:
    """What the flusher could not store of this run ('' when nothing): the row's mark,
    or the hot record's while the row was never written."""
    from .models import TaskRun

    marks = list(TaskRun.objects.filter(pk=run_id).values_list("flush_error", flat=True))
    if marks:
        return str(marks[0])
    try:
        mark: Any = get_redis().hget(keys.run_hash(run_id), "flush_error")
    except Exception:  # Redis down: the page shows what the database knows
        return ""
    return mark.decode() if mark else ""


def _database_writable() -> bool:
    """Whether the database could take a good row: it answers and holds every
    tasktrail migration. Tells one bad row from an outage when a batch of one fails."""
    from .checks import unapplied_migrations

    try:
        return not unapplied_migrations()
    except DatabaseError:
        return False


def flush_all(limit: int | None = None, timeout: float = 10.0) -> int:
    """Flush every changed run, due or not, and those another flusher holds under lease
    (shutdown, management commands, tests); give up after ``timeout`` seconds if runs
    keep changing meanwhile."""
    total = 0
    deadline = time.monotonic() + timeout
    while (written := flush_once(limit, everything=True)) and time.monotonic() < deadline:
        total += written
    return total + written + _write_leased(int(limit or settings.FLUSH_BATCH_SIZE))


def _write_leased(batch: int) -> int:
    """What is left in the dirty sets after the loop is under another flusher's lease,
    not yet written: write it too (the upsert keeps the newest version), so that every
    change made before flush_all is in the database when it returns."""
    client = get_redis()
    left: list[str] = []
    for base in keys.bases():
        members: Any = client.zrange(keys.dirty_set(base), 0, batch - 1)
        left += [member.decode() for member in members]
    return sum(write_now(left[i : i + batch]) for i in range(0, len(left), batch))


REPORT_EVERY = 60.0  # seconds between log lines while flushes keep failing


class Flusher(threading.Thread):
    """The background loop: flush every ``FLUSH_INTERVAL`` seconds until stopped."""

    def __init__(self) -> None:
        super().__init__(name="tasktrail-flusher", daemon=True)
        self.stopping = threading.Event()
        self.failing_since: float | None = None
        self.failures = 0
        self.reported_at = 0.0

    def failed(self, exc: Exception) -> None:
        """The first failure with its traceback; while it goes on (an outage: a round a
        second), one line a minute, so the log keeps room for other errors."""
        now = time.monotonic()
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = self.reported_at = now
            logger.exception("tasktrail: flush failed%s; retrying each round", _cause(exc))
        elif now - self.reported_at >= REPORT_EVERY:
            self.reported_at = now
            logger.error(
                "tasktrail: flush still failing after %d rounds (%.0f s)%s: %s",
                self.failures, now - self.failing_since, _cause(exc), exc,
            )  # fmt: skip

    def recovered(self) -> None:
        if self.failing_since is not None:
            logger.warning(
                "tasktrail: flush works again after %d failed rounds (%.1f s)",
                self.failures, time.monotonic() - self.failing_since,
            )  # fmt: skip
            self.failing_since, self.failures = None, 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                close_old_connections()
                while flush_once() >= int(settings.FLUSH_BATCH_SIZE):
                    pass
                self.recovered()
            except Exception as exc:
                self.failed(exc)
            self.stopping.wait(float(settings.FLUSH_INTERVAL))
        try:
            flush_all()
        except Exception:
            logger.exception("tasktrail: final flush failed; the runs stay due in Redis")
        finally:
            connections.close_all()


def _cause(exc: Exception) -> str:
    """Why a flush failed, when the fix is known: unapplied migrations (issue 11, item 5)."""
    from .checks import MIGRATE_HINT, describe_unapplied, unapplied_migrations

    if not isinstance(exc, DatabaseError):
        return ""
    try:
        missing = unapplied_migrations()
    except DatabaseError:
        return ""
    return f": {describe_unapplied(missing)}; {MIGRATE_HINT}" if missing else ""


_flusher: Flusher | None = None


def start() -> None:
    global _flusher
    if _flusher is None or not _flusher.is_alive():
        _flusher = Flusher()
        _flusher.start()


def stop(timeout: float = 10.0) -> None:
    global _flusher
    if _flusher is not None:
        _flusher.stopping.set()
        _flusher.join(timeout)
        _flusher = None
