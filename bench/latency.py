"""Latency: ``progress()`` in a worker to receipt by a client over real HTTP.

One real ``celery worker -P prefork -c 2`` and one real uvicorn; a task emits 1,000
progress updates 10 ms apart (wider than the 5 ms coalescing window, so each is an
event), each carrying its send time. Three ways for a client to learn of them:

- ``tasktrail``: tasktrail's SSE endpoint (``/tasks/<id>/events/``).
- ``tasktrail-pubsub``: tasktrail's ``progress()``, received as the hub receives it (a
  bare redis-py asyncio subscriber on the run's channel, no HTTP): the worker's share.
- ``tasktrail-django``: the same, served without ``direct_stream_writes`` (a second
  uvicorn): Django's response iteration writes every event (the change's baseline).
- ``seeds``: the seeds' stream (seed 000): pub/sub polled with ``get_message(timeout=0.1)``
  in a loop that also checks ``AsyncResult.state``, a thread per client.
- ``redis``: the floor: the task PUBLISHes (as the seeds do) and the client is a
  redis-py asyncio subscriber, no HTTP at all.
- ``poll``: celery-progress style: ``update_state(PROGRESS)`` in the task, the client
  GETs a JSON endpoint every 500 ms. An event's latency is the time until the first
  poll that shows it (or a later value).

    uv run python bench/latency.py            # 1,000 events, 3 runs per variant
    uv run python bench/latency.py --quick    # 200 events, 1 run
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

VARIANTS = ("tasktrail", "seeds", "poll", "redis", "tasktrail-django", "tasktrail-pubsub")
DEFAULT_VARIANTS = ("tasktrail", "seeds", "poll", "redis")
SPACING = 0.010
POLL_EVERY = 0.5


async def _stream_latencies(port: int, path: str, go: str, count: int) -> list[float]:
    client = harness.SSEClient(port, path)
    await client.connect()
    if client.status != 200:
        raise RuntimeError(f"GET {path} answered {client.status}")
    latencies: list[float] = []
    try:
        async for event in client.events():
            if event.kind == "state" and not latencies and go:
                harness.redis(13).lpush(go, "1")  # connected and snapshot seen: start
                go = ""
            elif event.kind == "progress":
                data = json.loads(event.data)
                sent = float(data["message"]) if "message" in data else float(data["sent"])
                latencies.append(event.received - sent)
                if len(latencies) >= count:
                    break
    finally:
        client.close()
    return latencies


async def _poll_latencies(port: int, task_id: str, go: str, prefix: str) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    seen: list[tuple[float, int]] = []  # (when, highest current shown)
    harness.redis(13).lpush(go, "1")
    try:
        while True:
            _status, body = await harness.http_get(reader, writer, f"/seeds/progress/{task_id}/")
            now = time.time()
            data = json.loads(body)
            if data["complete"]:
                seen.append((now, 10**9))
                break
            if data["progress"]:
                seen.append((now, int(data["progress"]["current"])))
            await asyncio.sleep(POLL_EVERY)
    finally:
        writer.close()
    sent_key = f"{prefix}:sent:{task_id}"
    raw = harness.redis(13).lrange(sent_key, 0, -1)
    sent = [float(x) for x in raw]
    latencies, index = [], 0
    for number, at in enumerate(sent, start=1):
        while seen[index][1] < number:
            index += 1
        latencies.append(seen[index][0] - at)
    return latencies


def _sent_at(data: bytes) -> float:
    """The send time in a message: the seeds' JSON, or tasktrail's event (its message)."""
    if data.startswith(b"{"):
        return float(json.loads(data)["payload"]["sent"])
    return float(json.loads(data.split(b"\x1f")[2])["message"])


async def _redis_latencies(
    task_id: str, go: str, count: int, prefix: str, channel: str = ""
) -> list[float]:
    import redis.asyncio as aredis

    client = aredis.Redis(host=harness.REDIS_HOST, port=harness.REDIS_PORT, db=13)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel or f"{prefix}:seeds:{task_id}")
    harness.redis(13).lpush(go, "1")
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + count * SPACING * 3 + 10
        while len(latencies) < count and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue  # a timeout, or the subscription's confirmation
            data = message["data"]
            if not data.startswith(b"{") and data.split(b"\x1f")[1] != b"progress":
                continue  # tasktrail's state events on the same channel
            latencies.append(time.time() - _sent_at(data))
    finally:
        await pubsub.aclose()
        await client.aclose()
    return latencies


def measure(variant: str, port: int, count: int, prefix: str) -> list[float]:
    from bench.tasks import progress_probe
    from tasktrail.access import make_token

    go = f"{prefix}:go:{uuid.uuid4().hex}"
    style = "tasktrail" if variant.startswith("tasktrail") else variant
    style = "seeds" if variant == "redis" else style
    result = progress_probe.delay(count, SPACING, style, go)
    if variant == "tasktrail-pubsub":
        from tasktrail import keys

        channel = keys.channel(keys.run_stream(result.id))
        latencies = asyncio.run(_redis_latencies(result.id, go, count, prefix, channel))
    elif variant.startswith("tasktrail"):
        path = f"/tasks/{result.id}/events/?token={make_token(result.id)}"
        latencies = asyncio.run(_stream_latencies(port, path, go, count))
    elif variant == "seeds":
        latencies = asyncio.run(_stream_latencies(port, f"/seeds/stream/{result.id}/", go, count))
    elif variant == "redis":
        latencies = asyncio.run(_redis_latencies(result.id, go, count, prefix))
    else:
        latencies = asyncio.run(_poll_latencies(port, result.id, go, prefix))
    result.get(timeout=60)
    return latencies


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=None, help="events per run (1,000; quick 200)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"of {VARIANTS}")
    p.add_argument("--profile", action="store_true", help="profile uvicorn (tasktrail variant)")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        p.error(f"variants are {VARIANTS}")
    count = args.events or (200 if args.quick else 1000)
    prefix = harness.unique_prefix("lat")
    env = harness.child_env(mode="tasktrail+rb", prefix=prefix, BENCH_TRACK_STARTED="1")
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "uvicorn", settings_env=env)
        print("latency: dry run ok")
        return 0
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    worker = harness.start_worker(env)
    web, port = harness.start_uvicorn(env)
    ports = dict.fromkeys(variants, port)
    plain_web = None
    if "tasktrail-django" in variants:
        plain_web, ports["tasktrail-django"] = harness.start_uvicorn(
            {**env, "BENCH_DIRECT_WRITES": "0"}, name="web-django"
        )
        measure("tasktrail-django", ports["tasktrail-django"], 5, prefix)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    samples: dict[str, list[float]] = {v: [] for v in variants}
    try:
        measure("tasktrail", port, 5, prefix)  # warm up the server and the worker
        for attempt in range(harness.repeats(args)):
            for variant in variants:
                latencies = measure(variant, ports[variant], count, prefix)
                summary = harness.summary_ms(latencies)
                runs[variant].append(summary)
                samples[variant].extend(latencies)
                print(f"run {attempt + 1} {variant}: {summary}", flush=True)
        if args.profile:  # one more tasktrail run against a profiled uvicorn
            target = harness.RESULTS / "latency.profile.txt"
            harness.stop(web)
            web, port = harness.start_uvicorn(env, name="web-profiled", profile=target)
            measure("tasktrail", port, 5, prefix)
            print(f"profiled: {harness.summary_ms(measure('tasktrail', port, count, prefix))}")
            harness.stop(web, interrupt=True)
            print(f"profile: {target}")
    finally:
        harness.stop(web)
        if plain_web is not None:
            harness.stop(plain_web)
        harness.stop(worker)
        harness.cleanup_redis(prefix)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{harness.RESULTS}/{prefix}.sqlite3{suffix}").unlink(missing_ok=True)
    medians = {
        v: {k: harness.median(r[k] for r in rs) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
        for v, rs in runs.items()
    }
    print()
    print(
        f"latency progress() -> client, {count} events, medians of {harness.repeats(args)} run(s)"
    )
    rows = [[v, m["p50_ms"], m["p95_ms"], m["p99_ms"], m["max_ms"]] for v, m in medians.items()]
    print(harness.table(rows, ["variant", "p50 ms", "p95 ms", "p99 ms", "max ms"]))
    ratios = {
        v: round(medians[v]["p50_ms"] / medians["tasktrail"]["p50_ms"], 1)
        for v in variants
        if "tasktrail" in medians and v != "tasktrail"
    }
    harness.save(
        "latency",
        {"events": count, "spacing_s": SPACING, "repeats": harness.repeats(args), "runs": runs,
         "medians": medians, "ratios_p50": ratios,
         "samples_ms": {v: [round(x * 1000, 3) for x in s] for v, s in samples.items()}},
        args.json,
    )  # fmt: skip
    for v, ratio in ratios.items():
        print(f"ratio {v} p50 / tasktrail p50: {ratio}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
