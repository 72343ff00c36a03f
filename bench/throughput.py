"""Throughput: 20,000 trivial tasks, enqueue rate and end-to-end rate.

Variants (same Redis broker, same ``celery worker -P prefork -c 2`` flags):
plain Celery with the Redis result backend; tasktrail as the result backend (the record
is the result: one Redis call stores both), with the row in SQLite and in PostgreSQL;
django-celery-results
on PostgreSQL. End to end is from the first ``delay()`` to the last task's finish time
(read from each variant's own record), with the worker consuming while we enqueue.
For tasktrail, ``db_lag`` is how much later the database held all runs as SUCCESSFUL.

    uv run python bench/throughput.py            # 20,000 tasks, 3 runs per variant
    uv run python bench/throughput.py --quick    # 2,000 tasks, 1 run
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

VARIANTS: dict[str, dict[str, str]] = {
    "plain": {"mode": "plain", "db": "sqlite"},
    "tasktrail-sqlite": {"mode": "tasktrail", "db": "sqlite"},
    "tasktrail-pg": {"mode": "tasktrail", "db": "postgres", "BENCH_PG_NAME": "tasktrail_bench"},
    "dcr-pg": {"mode": "dcr", "db": "postgres", "BENCH_PG_NAME": "tasktrail_bench_dcr"},
    # Not in the default set: tracking on *and* Celery's Redis result backend kept.
    "tasktrail-pg+rb": {"mode": "tasktrail+rb", "db": "postgres"},
    # The same with tasktrail's Redis a local Redis Cluster (3 masters, 3 replicas); the
    # broker and Celery's results stay on the single Redis (its backend cannot run on a
    # cluster). Compare with tasktrail-pg+rb: --variants tasktrail-pg+rb,tasktrail-pg+rb-cluster
    "tasktrail-pg+rb-cluster": {"mode": "tasktrail+rb", "db": "postgres", "cluster": "1"},
}
DEFAULT = ["plain", "tasktrail-sqlite", "tasktrail-pg", "dcr-pg"]


def _epoch(value: Any) -> float:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _finish_times(mode: str, ids: list[str], prefix: str, timeout: float) -> list[float]:
    """Wait until every task has finished; return their finish times (epoch seconds)."""
    deadline = time.monotonic() + timeout
    if mode == "dcr":
        from django_celery_results.models import TaskResult

        while True:
            done = TaskResult.objects.filter(status="SUCCESS").count()
            if done >= len(ids) + 1:
                rows = TaskResult.objects.filter(task_id__in=ids).values_list(
                    "date_done", flat=True
                )
                return [_epoch(d) for d in rows]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{len(ids)} done")
            time.sleep(0.25)
    if mode == "plain":
        client = harness.redis(12)
        key = f"{prefix}:result:celery-task-meta-{{}}"

        def read(chunk: list[str]) -> list[float | None]:
            values = client.mget([key.format(i) for i in chunk])
            return [None if v is None else _epoch(json.loads(v)["date_done"]) for v in values]
    else:
        from tasktrail import keys
        from tasktrail.connection import get_redis

        client = get_redis()  # tasktrail's own: a single Redis or a cluster

        def read(chunk: list[str]) -> list[float | None]:
            pipe = client.pipeline(transaction=False)
            for run_id in chunk:
                pipe.hmget(keys.run_hash(run_id), "status", "finished_at")
            return [float(f) if s == b"SUCCESSFUL" and f else None for s, f in pipe.execute()]

    while read(ids[-1:]) == [None]:
        if time.monotonic() > deadline:
            raise TimeoutError("the last task did not finish")
        time.sleep(0.1)
    times: list[float] = []
    pending = ids
    while pending:
        left: list[str] = []
        for start in range(0, len(pending), 2000):
            chunk = pending[start : start + 2000]
            for run_id, value in zip(chunk, read(chunk), strict=True):
                if value is None:
                    left.append(run_id)
                else:
                    times.append(value)
        pending = left
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} tasks did not finish")
            time.sleep(0.1)
    return times


def _cpu(worker: int, pool: list[int]) -> dict[str, float]:
    """CPU seconds so far of the worker's main process and pool, this process (the
    publisher), and every PostgreSQL and Redis server process."""
    servers = harness.cpu_by_command("postgres", "redis-server")
    return {
        "worker_main": harness.cpu_seconds(worker),
        "worker_pool": sum(harness.cpu_seconds(p) for p in pool),
        "publisher": harness.cpu_seconds(os.getpid()),
        "postgres": servers["postgres"],
        "redis": servers["redis-server"],
    }


def child(variant: str, count: int) -> dict[str, Any]:
    """One measurement in a process configured for ``variant`` (by the environment)."""
    import django

    django.setup()
    from django.core.management import call_command

    from bench.tasks import noop

    if noop.app.main != "bench":
        raise RuntimeError("the bench Celery app is not the current app")

    mode = os.environ["BENCH_MODE"]
    prefix = os.environ["BENCH_PREFIX"]
    call_command("migrate", verbosity=0)
    env = dict(os.environ)
    worker = harness.start_worker(env)
    try:
        noop.delay()  # warm up: one run before the measured ones (counted below)
        time.sleep(1.5)  # let the worker settle (flusher thread, pool)
        pool = harness.descendants(worker.pid)
        cpu0 = _cpu(worker.pid, pool)
        started = time.time()
        ids = [noop.delay().id for _ in range(count)]
        enqueued = time.time()
        finishes = _finish_times(mode, ids, prefix, timeout=max(120, count / 50))
        finished = max(finishes)
        figures: dict[str, Any] = {
            "variant": variant,
            "tasks": count,
            "enqueue_s": round(enqueued - started, 3),
            "enqueue_rate": round(count / (enqueued - started), 1),
            "e2e_s": round(finished - started, 3),
            "e2e_rate": round(count / (finished - started), 1),
        }
        if mode.startswith("tasktrail"):
            from tasktrail.models import TaskRun

            while TaskRun.objects.filter(status="SUCCESSFUL").count() < count + 1:
                if time.time() - finished > 120:
                    break
                time.sleep(0.1)
            in_db = time.time()
            figures["db_lag_s"] = round(in_db - finished, 3)
            figures["db_rate"] = round(count / (in_db - started), 1)
        cpu1 = _cpu(worker.pid, pool)
        figures["cpu_s"] = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
        figures["worker_rss_mb"] = round(harness.tree_rss(worker.pid) / 2**20, 1)
        if mode.startswith("tasktrail"):
            stats = harness.redis(13).hgetall(f"{prefix}:flusher-stats")
            figures["flusher"] = {k.decode(): round(float(v), 3) for k, v in stats.items()}
            from django.db import connection

            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relname = 'tasktrail_taskrun'"
                    )
                    row = cursor.fetchone()
                figures["pg_rows"] = dict(zip(("ins", "upd", "hot_upd"), row or (), strict=False))
        return figures
    finally:
        harness.stop(worker)
        harness.cleanup_redis(prefix)
        if os.environ.get("BENCH_DB") == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{harness.RESULTS}/{prefix}.sqlite3{suffix}").unlink(missing_ok=True)


def run_variant(variant: str, count: int) -> dict[str, Any]:
    spec = dict(VARIANTS[variant])
    mode, db = spec.pop("mode"), spec.pop("db")
    on_cluster = bool(spec.pop("cluster", ""))
    prefix = harness.unique_prefix("tp")
    env = harness.child_env(mode=mode, prefix=prefix, db=db, BENCH_INSTRUMENT="1", **spec)
    harness.RESULTS.mkdir(exist_ok=True)
    if db == "postgres":
        harness.prepare_database(env)
    with harness.redis_cluster() if on_cluster else contextlib.nullcontext("") as cluster_url:
        if cluster_url:
            env["BENCH_TRACKING_REDIS"] = cluster_url
        done = subprocess.run(
            [harness.PY, __file__, "--child", variant, "--tasks", str(count)],
            cwd=harness.ROOT, env=env, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="tasks per run (20,000; quick 2,000)")
    p.add_argument("--variants", default=",".join(DEFAULT), help=f"from {sorted(VARIANTS)}")
    p.add_argument("--child", default=None, help=argparse_hidden())
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    count = args.tasks or (2_000 if args.quick else 20_000)
    if args.child:
        print(json.dumps(child(args.child, count)))
        return 0
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "psycopg", "django_celery_results")
        print("throughput: dry run ok")
        return 0
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for attempt in range(harness.repeats(args)):
        for variant in variants:
            result = run_variant(variant, count)
            runs[variant].append(result)
            print(f"run {attempt + 1} {variant}: {result}", flush=True)
    medians = {
        v: {
            key: harness.median(r[key] for r in results)
            for key in results[0]
            if isinstance(results[0][key], int | float)
        }
        for v, results in runs.items()
    }
    base = medians.get("plain", {}).get("e2e_rate")
    rows = []
    for v, m in medians.items():
        ratio = round(m["e2e_rate"] / base, 3) if base else "-"
        rows.append(
            [v, m["tasks"], m["enqueue_rate"], m["e2e_rate"], m.get("db_lag_s", "-"), ratio]
        )
    print()
    print(f"throughput, medians of {harness.repeats(args)} run(s), {count} trivial tasks")
    print(
        harness.table(
            rows, ["variant", "tasks", "enqueue/s", "end-to-end/s", "db lag s", "x plain"]
        )
    )
    ratios = {v: round(m["e2e_rate"] / base, 3) for v, m in medians.items() if base}
    harness.save(
        "throughput",
        {"tasks": count, "repeats": harness.repeats(args), "runs": runs, "medians": medians,
         "ratios": ratios},
        args.json,
    )  # fmt: skip
    if "tasktrail-pg" in ratios:
        print(f"ratio tasktrail-pg / plain (end to end): {ratios['tasktrail-pg']:.3f}")
    single, on_cluster = (medians.get(v) for v in ("tasktrail-pg+rb", "tasktrail-pg+rb-cluster"))
    if single and on_cluster:
        ratio = on_cluster["e2e_rate"] / single["e2e_rate"]
        print(f"ratio cluster / single node (tasktrail-pg+rb, end to end): {ratio:.3f}")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
