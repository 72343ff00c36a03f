"""Status endpoint: requests/s and p99 at 50 concurrent clients under one uvicorn.

tasktrail's ``GET /tasks/<id>/`` (async view; the run read from its Redis hot record)
vs the seeds' polling view (seed 002: a sync Django view around ``AsyncResult``, run
by Django in its thread-sensitive executor under ASGI). Both ask about one finished
run; 50 keep-alive clients on raw asyncio sockets in this process, loopback only.

    uv run python bench/status_endpoint.py             # 10 s per variant, 3 runs
    uv run python bench/status_endpoint.py --quick     # 3 s, 1 run
    uv run python bench/status_endpoint.py --profile   # + a pyinstrument profile of uvicorn
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

CONCURRENCY = 50


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=None, help="seconds per run (10; quick 3)")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY)
    p.add_argument("--profile", action="store_true", help="profile uvicorn with pyinstrument")
    args = p.parse_args()
    duration = args.duration or (3.0 if args.quick else 10.0)
    prefix = harness.unique_prefix("st")
    env = harness.child_env(mode="tasktrail+rb", prefix=prefix)
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "uvicorn", settings_env=env)
        print("status_endpoint: dry run ok")
        return 0
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from bench.tasks import noop
    from tasktrail.access import make_token

    worker = harness.start_worker(env)
    profile = harness.RESULTS / "status_endpoint.profile.txt" if args.profile else None
    web, port = harness.start_uvicorn(env)
    runs: dict[str, list[dict[str, Any]]] = {"tasktrail": [], "seeds": []}
    try:
        result = noop.delay()
        result.get(timeout=60)
        paths = {
            "tasktrail": f"/tasks/{result.id}/?token={make_token(result.id)}",
            "seeds": f"/seeds/status/{result.id}/",
        }
        for path in paths.values():  # warm up (and check that both answer 200)
            figures = asyncio.run(harness.load(port, path, concurrency=2, duration=0.5))
            if figures["errors"]:
                raise RuntimeError(f"{path} does not answer 200")
        for attempt in range(harness.repeats(args)):
            for variant, path in paths.items():
                figures = asyncio.run(
                    harness.load(port, path, concurrency=args.concurrency, duration=duration)
                )
                runs[variant].append(figures)
                print(f"run {attempt + 1} {variant}: {figures}", flush=True)
        if profile:  # a separate, profiled server, loaded with tasktrail's view only
            harness.stop(web)
            web, port = harness.start_uvicorn(env, name="web-profiled", profile=profile)
            asyncio.run(harness.load(port, paths["tasktrail"], concurrency=2, duration=0.5))
            asyncio.run(
                harness.load(port, paths["tasktrail"], concurrency=args.concurrency,
                             duration=duration)
            )  # fmt: skip
            harness.stop(web, interrupt=True)
    finally:
        harness.stop(web)
        harness.stop(worker)
        harness.cleanup_redis(prefix)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{harness.RESULTS}/{prefix}.sqlite3{suffix}").unlink(missing_ok=True)
    keys = ("rps", "p50_ms", "p99_ms", "errors")
    medians = {v: {k: harness.median(r[k] for r in rs) for k in keys} for v, rs in runs.items()}
    print()
    print(
        f"status endpoint, {args.concurrency} concurrent clients, {duration:g} s, "
        f"medians of {harness.repeats(args)} run(s)"
    )
    rows = [[v, *(m[k] for k in keys)] for v, m in medians.items()]
    print(harness.table(rows, ["variant", "req/s", "p50 ms", "p99 ms", "errors"]))
    ratio = round(medians["tasktrail"]["rps"] / medians["seeds"]["rps"], 2)
    harness.save(
        "status_endpoint",
        {"concurrency": args.concurrency, "duration_s": duration, "runs": runs,
         "medians": medians, "ratio_rps": ratio, "profile": str(profile or "")},
        args.json,
    )  # fmt: skip
    if profile:
        print(f"profile: {profile}")
    print(f"ratio tasktrail / seeds (req/s): {ratio}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
