"""Memory: worker and web RSS before and after 100,000 runs.

A real prefork worker (``-c 2``) runs 100,000 trivial tasks with tracking on, the
record in PostgreSQL; after every batch the web process (one uvicorn) answers status
requests and opens and closes event streams for runs of that batch. Figures: RSS of
the worker's main process (which runs the flusher) and its pool, of uvicorn, and
Redis's memory and key count for this run's prefix, after a warm-up and at the end.

    uv run python bench/memory.py            # 100,000 runs
    uv run python bench/memory.py --quick    # 5,000 runs
    uv run python bench/memory.py --runs 1000000   # the soak (about an hour here)

At the end the database must hold exactly one SUCCESSFUL row per run (exit 1 if not).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

BATCH = 10_000
STATUS_PER_BATCH = 500
STREAMS_PER_BATCH = 100
GROWTH_BOUND_MB = 50.0


async def _exercise_web(port: int, ids: list[str], token: Any, concurrency: int) -> int:
    """Status requests and short-lived streams (``concurrency`` at a time) for runs of
    the last batch; returns the number of failures (non-200, or nothing within 10 s)."""
    errors = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for run_id in random.sample(ids, min(STATUS_PER_BATCH, len(ids))):
        path = f"/tasks/{run_id}/?token={token(run_id)}"
        try:
            status, _ = await asyncio.wait_for(harness.http_get(reader, writer, path), 10)
        except TimeoutError:
            errors += 1
            break
        errors += status != 200
    writer.close()
    gate = asyncio.Semaphore(concurrency)

    async def snapshot(client: harness.SSEClient) -> None:
        await client.connect()
        async for _ in client.events():
            break

    async def stream(run_id: str) -> None:
        nonlocal errors
        async with gate:
            client = harness.SSEClient(port, f"/tasks/{run_id}/events/?token={token(run_id)}")
            try:
                await asyncio.wait_for(snapshot(client), 10)
            except Exception:
                errors += 1
            finally:
                client.close()

    chosen = random.sample(ids, min(STREAMS_PER_BATCH, len(ids)))
    await asyncio.gather(*(stream(i) for i in chosen))
    return errors


def _snapshot(worker_pid: int, web_pid: int, prefix: str) -> dict[str, float]:
    pool = harness.descendants(worker_pid)
    info: Any = harness.redis(11).info("memory")
    keys = sum(1 for _ in harness.redis(11).scan_iter(f"{prefix}:*", count=5000))
    return {
        "worker_main_mb": round(harness.rss_bytes(worker_pid) / 2**20, 1),
        "worker_pool_mb": round(sum(harness.rss_bytes(c) for c in pool) / 2**20, 1),
        "web_mb": round(harness.rss_bytes(web_pid) / 2**20, 1),
        "redis_used_mb": round(int(info["used_memory"]) / 2**20, 1),
        "redis_keys": keys,
    }


def _rows_saved(expected: int, timeout: float = 300) -> tuple[int, int]:
    """Rows in the benchmark's database and how many of them are SUCCESSFUL, once the
    flusher has written every run (or after ``timeout``)."""
    from tasktrail.models import TaskRun

    deadline = time.monotonic() + timeout
    while True:
        total = TaskRun.objects.count()
        final = TaskRun.objects.filter(status="SUCCESSFUL").count()
        if final >= expected or time.monotonic() > deadline:
            return total, final
        time.sleep(1.0)


def _wait_finished(prefix: str, ids: list[str], timeout: float = 600) -> None:
    client = harness.redis(11)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for run_id in ids[-50:]:
            pipe.hget(f"{prefix}:run:{run_id}", "status")
        if all(s == b"SUCCESSFUL" for s in pipe.execute()):
            return
        time.sleep(0.2)
    raise TimeoutError("the batch did not finish")


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="runs (100,000; quick 5,000)")
    p.add_argument(
        "--stream-concurrency", type=int, default=10,
        help="streams opened at once per batch (100 reproduces the hub failure, see docs)",
    )  # fmt: skip
    args = p.parse_args()
    total = args.runs or (5_000 if args.quick else 100_000)
    prefix = harness.unique_prefix("mem")
    env = harness.child_env(
        mode="tasktrail", prefix=prefix, db="postgres", BENCH_PG_NAME="tasktrail_bench_mem"
    )
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "psycopg", "uvicorn", settings_env=env)
        print("memory: dry run ok")
        return 0
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from bench.tasks import noop
    from tasktrail.access import make_token

    worker = harness.start_worker(env)
    web, port = harness.start_uvicorn(env)
    series: list[dict[str, Any]] = []
    errors = 0
    try:
        warm = [noop.delay().id for _ in range(1000)]
        _wait_finished(prefix, warm)
        errors += asyncio.run(_exercise_web(port, warm, make_token, args.stream_concurrency))
        time.sleep(1.0)
        before = {"runs": 0, **_snapshot(worker.pid, web.pid, prefix)}
        series.append(before)
        print(f"before: {before}", flush=True)
        done = 0
        while done < total:
            size = min(BATCH, max(1, total // 2), total - done)
            ids = [noop.delay().id for _ in range(size)]
            _wait_finished(prefix, ids)
            errors += asyncio.run(_exercise_web(port, ids, make_token, args.stream_concurrency))
            done += size
            point = {"runs": done, **_snapshot(worker.pid, web.pid, prefix)}
            series.append(point)
            print(f"after {done}: {point}", flush=True)
        time.sleep(2.0)  # the flusher's last rounds
        after = {"runs": done, **_snapshot(worker.pid, web.pid, prefix)}
        series.append(after)
        expected = len(warm) + done
        saved, final = _rows_saved(expected)
    finally:
        harness.stop(web)
        harness.stop(worker)
        harness.cleanup_redis(prefix)
    growth = {
        k: round(after[k] - before[k], 1)
        for k in ("worker_main_mb", "worker_pool_mb", "web_mb", "redis_used_mb")
    }
    redis_per_run = round((after["redis_used_mb"] - before["redis_used_mb"]) * 2**20 / total)
    print()
    print(f"memory, {total} runs (one run; RSS in MiB)")
    table = [
        [k, before[k], after[k], growth[k]]
        for k in ("worker_main_mb", "worker_pool_mb", "web_mb", "redis_used_mb")
    ]
    print(harness.table(table, ["process", "before", "after", "growth"]))
    print(f"database rows: {saved} (expected {expected}), SUCCESSFUL: {final}")
    print(f"web errors: {errors}; Redis keys for the prefix: {after['redis_keys']}; "
          f"Redis bytes per finished run kept: {redis_per_run}")  # fmt: skip
    harness.save(
        "memory",
        {"runs": total, "series": series, "growth_mb": growth, "errors": errors,
         "redis_bytes_per_run": redis_per_run, "rows": saved, "rows_final": final,
         "rows_expected": expected},
        args.json,
    )  # fmt: skip
    worst = max(growth["worker_main_mb"], growth["worker_pool_mb"], growth["web_mb"])
    print(f"largest process growth {worst} MiB (bound {GROWTH_BOUND_MB} MiB); "
          f"ratio after / before (worker pool): "
          f"{after['worker_pool_mb'] / before['worker_pool_mb']:.2f}")  # fmt: skip
    return 0 if saved == final == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
