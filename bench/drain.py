"""The record drains: 100,000 runs, then an empty Redis restart and a database outage.

A prefork worker (``-c 2``) runs trivial tasks recorded in a PostgreSQL cluster and a
tasktrail Redis of this benchmark's own (the broker stays on the shared Redis, so an
outage of tasktrail's Redis loses no message). Three phases, one after the other:

1. ``steady``: ``--runs`` tasks. When does the flusher's dirty set reach 0 after the
   last run finished, does the database hold exactly that many final rows, how many
   bytes per finished run does Redis keep while ``STREAM_TTL`` lasts, and is its memory
   back at the baseline (measured before the first run) once that TTL has passed?
2. ``redis-restart``: ``--outage-runs`` tasks; tasktrail's Redis is SIGKILLed a third
   of the way in and restarted empty 3 s later.
3. ``db-outage``: ``--outage-runs`` tasks; the database is stopped a third of the way in
   and started 5 s later.

For each outage: how long after the service is back until every row is final (and the
dirty set empty), and whether every run's row exists and is final.

    uv run python bench/drain.py            # 100,000 + 2 x 10,000 runs
    uv run python bench/drain.py --quick    # 5,000 + 2 x 1,000 runs
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.services import PrivatePostgres, PrivateRedis

from bench import harness

FINAL = ("SUCCESSFUL", "FAILED", "CANCELLED")
_PUBLISH = """
import django, sys
django.setup()
from bench.tasks import noop
for _ in range(int(sys.argv[1])):
    noop.delay()
"""


class Probe:
    """Reads the database and tasktrail's Redis from outside (no Django here), riding
    out the outages the benchmark causes."""

    def __init__(self, pg_port: int, redis_url: str, prefix: str) -> None:
        self.dsn = f"host=127.0.0.1 port={pg_port} user=postgres dbname=tasktrail_bench"
        self.redis_url = redis_url
        self.prefix = prefix
        self.dirty_key = f"{prefix}:dirty"
        self._conn: Any = None

    def rows(self) -> tuple[int, int] | None:
        """(rows, final rows), or None while the database does not answer."""
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
            placeholders = ", ".join(["%s"] * len(FINAL))
            row = self._conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status IN "
                f"({placeholders})) FROM tasktrail_taskrun",
                FINAL,
            ).fetchone()
            return int(row[0]), int(row[1])
        except psycopg.Error:
            self._conn = None
            return None

    def unfinished(self, limit: int = 5) -> dict[str, Any]:
        """What the rows not final say (the figures name them when a phase fails)."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            counts = conn.execute(
                "SELECT status, count(*) FROM tasktrail_taskrun WHERE status NOT IN "
                "(%s, %s, %s) GROUP BY status",
                FINAL,
            ).fetchall()
            sample = conn.execute(
                "SELECT id, status, attempts, worker, started_at, finished_at, version "
                "FROM tasktrail_taskrun WHERE status NOT IN (%s, %s, %s) LIMIT %s",
                (*FINAL, limit),
            ).fetchall()
        return {"by_status": dict(counts), "sample": [[str(v) for v in row] for row in sample]}

    def last_finished(self) -> float:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT extract(epoch FROM max(finished_at)) FROM tasktrail_taskrun")
            value = row.fetchone()
        return float(value[0]) if value and value[0] is not None else 0.0

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)

    def dirty(self) -> int | None:
        import redis

        try:
            client = self._redis()
            kind = client.type(self.dirty_key).decode()
            if kind == "zset":
                return int(client.zcard(self.dirty_key))
            return int(client.scard(self.dirty_key)) if kind == "set" else 0
        except redis.RedisError:
            return None

    def memory(self) -> int:
        return int(self._redis().info("memory")["used_memory"])

    def capped_bytes(self) -> int:
        """What the streams without a TTL hold (the firehose, capped at FIREHOSE_MAXLEN)."""
        client = self._redis()
        return sum(
            int(client.memory_usage(key) or 0) for key in client.scan_iter(f"{self.prefix}:events:*")
            if client.ttl(key) == -1
        )  # fmt: skip


class _Publishers:
    """``count`` runs sent by a few processes at once (one process waits on a Redis round
    trip per publish; the worker would idle behind it)."""

    def __init__(self, env: dict[str, str], count: int, name: str, processes: int = 3) -> None:
        shares = [
            count // processes + (1 if i < count % processes else 0) for i in range(processes)
        ]
        self.children = [
            harness.spawn([harness.PY, "-c", _PUBLISH, str(n)], env, f"{name}-publisher{i}")
            for i, n in enumerate(shares)
        ]

    def poll(self) -> int | None:
        codes = [child.poll() for child in self.children]
        return None if None in codes else max(c or 0 for c in codes)

    def wait(self, timeout: float) -> None:
        for child in self.children:
            child.wait(timeout)


def _publish(env: dict[str, str], count: int, name: str) -> _Publishers:
    return _Publishers(env, count, name)


def _wait_all_final(probe: Probe, expected: int, timeout: float) -> dict[str, Any]:
    """Poll until ``expected`` rows are final and the dirty set is empty."""
    deadline = time.time() + timeout
    seen: tuple[int, int] | None = None
    while time.time() < deadline:
        seen = probe.rows() or seen
        if seen and seen[1] >= expected and probe.dirty() == 0:
            return {"at": time.time(), "rows": seen[0], "final": seen[1]}
        time.sleep(0.25)  # a count over every row: often enough, not a load of its own
    rows = seen or (0, 0)
    return {"at": None, "rows": rows[0], "final": rows[1], "dirty": probe.dirty()}


def steady(probe: Probe, env: dict[str, str], runs: int, ttl: int) -> dict[str, Any]:
    baseline = probe.memory()
    started = time.time()
    publisher = _publish(env, runs, env["BENCH_PREFIX"])
    peak = baseline
    while publisher.poll() is None:
        peak = max(peak, probe.memory())
        time.sleep(0.5)
    published = time.time()
    done = _wait_all_final(probe, runs, timeout=max(300, runs / 100))
    last = probe.last_finished()
    kept = probe.memory()
    figures: dict[str, Any] = {
        "runs": runs,
        "publish_s": round(published - started, 1),
        "rows": done["rows"],
        "final_rows": done["final"],
        "rate_per_s": round(runs / ((done["at"] or time.time()) - started), 1),
        "drained_after_last_run_s": round(done["at"] - last, 2) if done["at"] else None,
        "redis_baseline_mb": round(baseline / 2**20, 2),
        "redis_peak_mb": round(peak / 2**20, 2),
        "redis_kept_mb": round(kept / 2**20, 2),
        "bytes_per_finished_run_kept": round((kept - baseline) / runs),
    }
    # Once STREAM_TTL (and result_expires) has passed, what Redis keeps should be the
    # baseline plus the capped streams (the documented retention), give or take 1 MiB.
    deadline = time.time() + ttl + 120
    back = False
    while time.time() < deadline:
        capped = probe.capped_bytes()
        if probe.memory() - capped <= baseline + 2**20:
            back = True
            break
        time.sleep(1)
    figures["redis_after_ttl_mb"] = round(probe.memory() / 2**20, 2)
    figures["capped_streams_mb"] = round(probe.capped_bytes() / 2**20, 2)
    figures["back_to_baseline"] = back
    figures["back_to_baseline_after_last_run_s"] = round(time.time() - last, 1)
    return figures


def outage(
    probe: Probe, env: dict[str, str], runs: int, before: int, name: str, cut: Any, heal: Any
) -> dict[str, Any]:
    """Publish ``runs`` more; a third of the way in, ``cut()``; ``heal()`` after the pause."""
    expected = before + runs
    publisher = _publish(env, runs, f"{env['BENCH_PREFIX']}-{name}")
    while (probe.rows() or (0, 0))[1] < before + runs // 3:
        time.sleep(0.25)
    cut_at = time.time()
    cut()
    time.sleep(3 if name == "redis-restart" else 5)
    heal()
    back = time.time()
    publisher.wait(600)
    done = _wait_all_final(probe, expected, timeout=300)
    last = probe.last_finished()
    if done["at"] is None:
        print(f"{name}: rows not final:", probe.unfinished(), flush=True)
    return {
        "runs": runs,
        "down_s": round(back - cut_at, 1),
        "rows": done["rows"] - before,
        "final_rows": done["final"] - before,
        "all_final_after_back_s": round(done["at"] - back, 2) if done["at"] else None,
        "all_final_after_last_run_s": round(done["at"] - last, 2) if done["at"] else None,
    }


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="steady runs (100,000; quick 5,000)")
    p.add_argument("--outage-runs", type=int, default=None, help="per outage (10,000; quick 1,000)")
    p.add_argument("--ttl", type=int, default=30, help="STREAM_TTL for the run, seconds")
    args = p.parse_args()
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "psycopg")
        print("drain: dry run ok")
        return 0
    runs = args.runs or (5_000 if args.quick else 100_000)
    outage_runs = args.outage_runs or (1_000 if args.quick else 10_000)
    prefix = harness.unique_prefix("drain")
    pg = PrivatePostgres()
    pg.start()
    tracking = PrivateRedis(tempfile.mkdtemp(prefix="tt-drain-redis-"))
    tracking.start()
    worker = None
    try:
        env = harness.child_env(
            mode="tasktrail", prefix=prefix, db="postgres", PGPORT=str(pg.port),
            BENCH_TRACKING_REDIS=tracking.url, BENCH_STREAM_TTL=str(args.ttl),
        )  # fmt: skip
        harness.prepare_database(env)
        worker = harness.start_worker(env)
        probe = Probe(pg.port, tracking.url, prefix)
        figures: dict[str, Any] = {"steady": steady(probe, env, runs, args.ttl)}
        print("steady:", figures["steady"], flush=True)
        figures["redis-restart"] = outage(
            probe, env, outage_runs, runs, "redis-restart", tracking.kill, tracking.start
        )
        print("redis-restart:", figures["redis-restart"], flush=True)
        figures["db-outage"] = outage(
            probe, env, outage_runs, runs + outage_runs, "db-outage", pg.stop, pg.start
        )
        print("db-outage:", figures["db-outage"], flush=True)
    finally:
        if worker is not None:
            harness.stop(worker)
        tracking.kill()
        pg.remove()
        harness.cleanup_redis(prefix)
    rows = [
        [name, f["runs"], f["final_rows"], f.get("drained_after_last_run_s", "-"),
         f.get("all_final_after_back_s", "-")]
        for name, f in figures.items()
    ]  # fmt: skip
    print()
    print(harness.table(rows, ["phase", "runs", "final rows", "drained s", "final after back s"]))
    harness.save("drain", figures, args.json)
    exact = all(f["final_rows"] == f["runs"] == f["rows"] for f in figures.values())
    print("every run has exactly one final row:", exact)
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
