"""Hot loop: 1,000,000 ``progress()`` calls in one task vs the same empty loop.

Both loops run inside a real prefork worker and time themselves; the figure is the
time ``progress()`` adds, and how many events the coalescing actually sent.

    uv run python bench/hot_loop.py              # 1,000,000 calls, 3 runs
    uv run python bench/hot_loop.py --profile    # and a pyinstrument profile of one run
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

TARGET_S = 1.0


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--profile", action="store_true", help="profile one run with pyinstrument")
    args = p.parse_args()
    prefix = harness.unique_prefix("hot")
    env = harness.child_env(mode="tasktrail+rb", prefix=prefix)
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "pyinstrument", settings_env=env)
        print("hot_loop: dry run ok")
        return 0
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from bench.tasks import hot_loop

    worker = harness.start_worker(env)
    runs: list[dict[str, Any]] = []
    client = harness.redis(11)
    try:
        hot_loop.delay(1000, True).get(timeout=60)  # warm up
        for attempt in range(harness.repeats(args)):
            empty = hot_loop.delay(args.calls, False).get(timeout=600)
            result = hot_loop.delay(args.calls, True)
            loaded = result.get(timeout=600)
            events = client.xlen(f"{prefix}:events:run:{result.id}")
            figures = {
                "empty_s": round(empty, 3),
                "progress_s": round(loaded, 3),
                "added_s": round(loaded - empty, 3),
                "per_call_us": round((loaded - empty) / args.calls * 1e6, 3),
                "events": int(events),
            }
            runs.append(figures)
            print(f"run {attempt + 1}: {figures}", flush=True)
        if args.profile:
            target = harness.RESULTS / "hot_loop.profile.txt"
            hot_loop.delay(args.calls, True, str(target)).get(timeout=600)
            print(f"profile: {target}")
    finally:
        harness.stop(worker)
        harness.cleanup_redis(prefix)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{harness.RESULTS}/{prefix}.sqlite3{suffix}").unlink(missing_ok=True)
    medians = {k: harness.median(r[k] for r in runs) for k in runs[0]}
    print()
    print(f"hot loop, {args.calls} progress() calls, medians of {len(runs)} run(s)")
    print(
        harness.table(
            [[args.calls, medians["empty_s"], medians["progress_s"], medians["added_s"],
              medians["per_call_us"], medians["events"]]],
            ["calls", "empty loop s", "with progress s", "added s", "us/call", "events sent"],
        )
    )  # fmt: skip
    harness.save("hot_loop", {"calls": args.calls, "runs": runs, "medians": medians}, args.json)
    ratio = medians["progress_s"] / medians["empty_s"] if medians["empty_s"] else float("nan")
    print(f"added {medians['added_s']:.3f} s (target <= {TARGET_S} s); "
          f"ratio progress loop / empty loop: {ratio:.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
