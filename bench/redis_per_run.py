"""Redis bytes a finished run keeps, with the default settings (docs/deployment.md).

A real prefork worker (``-c 2``) runs two kinds of runs to the end: trivial ones
(``noop``: the state events only) and ones with ten progress events
(``progress_probe``). For each finished run the script adds up ``MEMORY USAGE`` of every
key named after it (the hot record, its event stream, Celery's result meta); the
firehose, shared by all runs and capped at ``FIREHOSE_MAXLEN`` events, is counted per
event. Redis's ``used_memory`` growth is printed beside, as a cross-check.

    uv run python bench/redis_per_run.py            # 500 runs of each kind (about 55 s here)
    uv run python bench/redis_per_run.py --quick    # 200 of each
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

PROGRESS_EVENTS = 10


def _wait_finished(prefix: str, ids: list[str], timeout: float = 300) -> None:
    client = harness.redis(11)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(f"{prefix}:run:{run_id}", "status")
        if all(status == b"SUCCESSFUL" for status in pipe.execute()):
            return
        time.sleep(0.2)
    raise TimeoutError("the runs did not finish")


def _bytes_per_run(prefix: str, ids: list[str], ttls: dict[str, int]) -> dict[str, float]:
    """Median ``MEMORY USAGE`` per run of each of its keys (exact: ``SAMPLES 0``)."""
    client = harness.redis(11)
    # Where Celery's meta lands depends on the backend's key prefix: find it once.
    [meta] = [k.decode() for k in client.scan_iter(f"*celery-task-meta-{ids[0]}", count=5000)]
    names = {
        "record (hash)": lambda run_id: f"{prefix}:run:{run_id}",
        "event stream": lambda run_id: f"{prefix}:events:run:{run_id}",
        "celery meta": lambda run_id: meta.replace(ids[0], run_id),
    }
    figures: dict[str, float] = {}
    for label, key in names.items():
        pipe = client.pipeline(transaction=False)
        for run_id in ids:
            pipe.memory_usage(key(run_id), samples=0)
        figures[label] = round(statistics.median(size or 0 for size in pipe.execute()))
        # How long each kept key lives from now on (its TTL), as the sizing needs it.
        ttls[label] = round(statistics.median(client.ttl(key(run_id)) for run_id in ids[:50]))
    events = client.xlen(f"{prefix}:events:firehose")
    firehose = client.memory_usage(f"{prefix}:events:firehose", samples=0) or 0
    figures["firehose, per event"] = round(firehose / max(events, 1))
    return figures


def _used_memory() -> int:
    return int(harness.redis(11).info("memory")["used_memory"])


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="runs of each kind (500; quick 200)")
    args = p.parse_args()
    count = args.runs or (200 if args.quick else 500)
    prefix = harness.unique_prefix("rpr")
    env = harness.child_env(mode="tasktrail", prefix=prefix)
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", settings_env=env)
        print("redis_per_run: dry run ok")
        return 0
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from bench.tasks import noop, progress_probe
    from tasktrail.conf import settings

    worker = harness.start_worker(env)
    rows: list[list[Any]] = []
    ttls: dict[str, int] = {}
    figures: dict[str, Any] = {"runs_per_kind": count}
    try:
        kinds = {
            "trivial (state events only)": lambda: noop.delay(),
            f"{PROGRESS_EVENTS} progress events": lambda: progress_probe.delay(
                PROGRESS_EVENTS,
                0.01,
                "tasktrail",  # spaced: none coalesced
            ),
        }
        for label, submit in kinds.items():
            before = _used_memory()
            ids = [submit().id for _ in range(count)]
            _wait_finished(prefix, ids)
            time.sleep(1.5)  # the flusher's last round empties the dirty set
            grown = (_used_memory() - before) / count
            sizes = _bytes_per_run(prefix, ids, ttls)
            per_run = sum(v for k, v in sizes.items() if k != "firehose, per event")
            events = round(
                statistics.median(
                    harness.redis(11).xlen(f"{prefix}:events:run:{run_id}") for run_id in ids
                )
            )
            rows.append([label, *sizes.values(), events, per_run, round(grown)])
            figures[label] = {**sizes, "events": events, "keys": per_run, "used_memory": grown}
    finally:
        harness.stop(worker)
        harness.cleanup_redis(prefix)
    header = ["run", "record", "stream", "celery meta", "firehose/event", "events", "keys",
              "used_memory"]  # fmt: skip
    print(f"Redis bytes per finished run, {count} runs of each kind, default settings "
          f"(STREAM_TTL {settings.STREAM_TTL} s, FIREHOSE_MAXLEN {settings.FIREHOSE_MAXLEN})")  # fmt: skip
    print(harness.table(rows, header))
    print(f"TTL of each key, seconds (median): {ttls}")
    harness.save("redis_per_run", {**figures, "ttl_s": ttls}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
