"""Fan-out: N concurrent SSE clients on one uvicorn process, one event to all.

For N in 1,000 / 5,000 / 10,000 (quick: 200 / 1,000), the clients (raw asyncio
sockets in two client processes, loopback only) open tasktrail's stream of one run
and read its snapshot; then the run emits one ``progress()`` event. Figures: time
until the last client has it (and p50/p99), the uvicorn process's RSS, and its Redis
connections (``CLIENT LIST`` entries whose address is one of its sockets).
Baseline, same run: the seeds' stream (a thread, a pub/sub connection and a result
backend connection per client) at the smallest N.

    uv run python bench/fanout.py            # 1,000 5,000 10,000 (+ seeds at 1,000)
    uv run python bench/fanout.py --quick    # 200 1,000 (+ seeds at 200)
    uv run python bench/fanout.py --quick --cluster   # single Redis vs a local Redis Cluster
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

CLIENT_PROCESSES = 2
CONNECT_CONCURRENCY = 100


# --------------------------------------------------------------------------- client side


async def _clients(port: int, path: str, count: int, timeout: float) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    ready = asyncio.Event()
    state = {"ready": 0, "failed": 0}
    received: list[tuple[float, float]] = []
    errors: list[str] = []

    def settle() -> None:
        if state["ready"] + state["failed"] >= count:
            ready.set()

    async def one() -> None:
        client = harness.SSEClient(port, path)
        counted = False
        try:
            async with gate:
                await client.connect()
                if client.status != 200:
                    raise RuntimeError(f"status {client.status}")
                events = client.events()
                first = await anext(events)
                if first.kind != "state":
                    raise RuntimeError(f"first event {first.kind}")
            state["ready"] += 1
            counted = True
            settle()
            kinds = []
            async for event in events:
                if event.kind == "progress":
                    data = json.loads(event.data)
                    sent = float(data["message"]) if "message" in data else float(data["sent"])
                    received.append((event.received, sent))
                    return
                kinds.append(event.kind)
            raise RuntimeError(f"stream ended without the event, after {kinds}")
        except Exception as exc:
            if len(errors) < 5:
                errors.append(repr(exc)[:200])
            if not counted:
                state["failed"] += 1
                settle()
        finally:
            client.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    started = time.monotonic()
    await ready.wait()
    print(
        json.dumps({"ready": state["ready"], "failed": state["failed"],
                    "connect_s": round(time.monotonic() - started, 2)}),
        flush=True,
    )  # fmt: skip
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    return {"received": received, "failed": state["failed"], "errors": errors}


def client_process(port: int, path: str, count: int, timeout: float) -> None:
    harness.raise_nofile()
    result = asyncio.run(_clients(port, path, count, timeout))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- orchestration


def measure(variant: str, clients: int, port: int, web_pid: int, prefix: str) -> dict[str, Any]:
    from bench.tasks import fanout_probe
    from tasktrail.access import make_token

    go = f"{prefix}:go:{uuid.uuid4().hex}"
    result = fanout_probe.delay(go, variant)
    time.sleep(0.5)  # the run is RUNNING
    if variant.startswith("tasktrail"):
        path = f"/tasks/{result.id}/events/?token={make_token(result.id)}"
    else:
        path = f"/seeds/stream/{result.id}/"
    idle_conns = harness.redis_connections(web_pid)
    shares = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES)
              for i in range(CLIENT_PROCESSES)]  # fmt: skip
    procs = [
        subprocess.Popen(
            [harness.PY, __file__, "--client", str(port), path, str(share), "120"],
            cwd=harness.ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    try:
        ready = [json.loads(p.stdout.readline() or "{}") for p in procs]  # type: ignore[union-attr]
        time.sleep(1.0)
        rss = harness.rss_bytes(web_pid)
        conns = harness.redis_connections(web_pid)
        harness.redis(13).lpush(go, "1")
        outputs = [json.loads(p.stdout.readline() or "{}") for p in procs]  # type: ignore[union-attr]
        rss_after = harness.rss_bytes(web_pid)
    finally:
        harness.redis(13).lpush(go + ":end", "1")
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with contextlib.suppress(Exception):
            result.get(timeout=30)
    pairs = [tuple(x) for o in outputs for x in o.get("received", [])]
    sent = pairs[0][1] if pairs else float("nan")
    delays = [r - sent for r, _ in pairs]
    return {
        "variant": variant,
        "clients": clients,
        "connected": sum(r.get("ready", 0) for r in ready),
        "connect_s": max(r.get("connect_s", 0) for r in ready),
        "received": len(delays),
        "last_ms": round(max(delays) * 1000, 1) if delays else None,
        **{k: v for k, v in harness.summary_ms(delays).items() if k in ("p50_ms", "p99_ms")},
        "rss_mb": round(max(rss, rss_after) / 2**20, 1),
        "redis_conns_idle": idle_conns,
        "redis_conns": conns,
        "errors": [e for o in outputs for e in o.get("errors", [])][:3],
    }


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--clients", default=None, help="comma-separated N (1000,5000,10000)")
    p.add_argument("--seeds-clients", type=int, default=None, help="N for the seeds baseline")
    p.add_argument("--profile", action="store_true", help="profile uvicorn at the largest N")
    p.add_argument(
        "--django-writes", action="store_true",
        help="also tasktrail without direct_stream_writes (Django writes every event)",
    )  # fmt: skip
    p.add_argument("--client", nargs=4, default=None, help=__import__("argparse").SUPPRESS)
    p.add_argument(
        "--cluster", action="store_true",
        help="tasktrail on a single Redis, then on a local Redis Cluster; print the ratio",
    )  # fmt: skip
    p.add_argument("--on-cluster", action="store_true", help=__import__("argparse").SUPPRESS)
    args = p.parse_args()
    if args.client:
        port, path, count, timeout = args.client
        client_process(int(port), path, int(count), float(timeout))
        return 0
    if args.cluster and not args.dry_run:
        return _single_against_cluster(args)
    if args.on_cluster and not args.dry_run:
        with harness.redis_cluster() as url:
            os.environ["BENCH_TRACKING_REDIS"] = url
            return _run(p, args)
    return _run(p, args)


def _single_against_cluster(args: Any) -> int:
    """The same fan-out with tasktrail's Redis a single node and then a cluster (each in a
    process of its own, the seeds baseline left out); the ratio of the times to the last
    client."""
    flags = [*(["--quick"] if args.quick else []), "--seeds-clients", "0"]
    flags += [*(["--clients", args.clients] if args.clients else [])]
    flags += [*(["--repeat", str(args.repeat)] if args.repeat else [])]
    found: dict[str, dict[str, dict[str, float]]] = {}
    # The cluster first: its nodes start before thousands of client sockets take
    # ephemeral ports (tests/redis_cluster.py gives them bus ports outside that range).
    for label, extra in (("cluster", ["--on-cluster"]), ("single", [])):
        done = subprocess.run(
            [harness.PY, __file__, *flags, *extra], cwd=harness.ROOT, capture_output=True,
            text=True, timeout=3600,
        )  # fmt: skip
        print(done.stdout, end="", flush=True)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        found[label] = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("MEDIANS "))
    print()
    print("fan-out, tasktrail on a Redis Cluster against a single Redis (same run)")
    rows = []
    for label, single in found["single"].items():
        on_cluster = found["cluster"].get(label.replace("tasktrail@", "tasktrail-cluster@"))
        if on_cluster and single.get("last_ms") and on_cluster.get("last_ms"):
            ratio = round(on_cluster["last_ms"] / single["last_ms"], 2)
            rows.append([label.split("@")[1], single["last_ms"], on_cluster["last_ms"], ratio])
    print(harness.table(rows, ["N", "single last ms", "cluster last ms", "cluster/single"]))
    return 0


def _run(p: Any, args: Any) -> int:
    sizes = [int(x) for x in (args.clients or ("200,1000" if args.quick else "1000,5000,10000"))
             .split(",")]  # fmt: skip
    seeds_n = args.seeds_clients if args.seeds_clients is not None else min(sizes)
    prefix = harness.unique_prefix("fan")
    env = harness.child_env(mode="tasktrail+rb", prefix=prefix, BENCH_TRACK_STARTED="1")
    limit = harness.raise_nofile()
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "uvicorn", settings_env=env)
        print(f"fanout: dry run ok (RLIMIT_NOFILE {limit})")
        return 0
    if limit < max(sizes) + 500:
        p.error(f"RLIMIT_NOFILE is {limit}; {max(sizes)} clients need more (ulimit -Hn)")
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    worker = harness.start_worker(env)
    runs: list[dict[str, Any]] = []
    try:
        ours = "tasktrail-cluster" if args.on_cluster else "tasktrail"
        plan = [(ours, n) for n in sizes] + ([("seeds", seeds_n)] if seeds_n else [])
        if args.django_writes:
            plan = [step for n in sizes for step in ((ours, n), ("tasktrail-django", n))]
            plan += [("seeds", seeds_n)] if seeds_n else []
        for attempt in range(harness.repeats(args)):
            for variant, n in plan:
                web_env = {**env, "BENCH_DIRECT_WRITES": "0"} if variant.endswith("django") else env
                web, port = harness.start_uvicorn(web_env, name=f"web-{variant}-{n}")
                try:
                    measure("tasktrail", 2, port, harness.server_pid(web), prefix)  # warm up
                    figures = measure(variant, n, port, harness.server_pid(web), prefix)
                finally:
                    harness.stop(web)
                figures["run"] = attempt + 1
                runs.append(figures)
                print(f"run {attempt + 1}: {figures}", flush=True)
        if args.profile:  # one more run at the largest N under pyinstrument (slower)
            target = harness.RESULTS / "fanout.profile.txt"
            web, port = harness.start_uvicorn(env, name="web-profiled", profile=target)
            try:
                measure("tasktrail", 2, port, harness.server_pid(web), prefix)
                print(
                    f"profiled: {measure('tasktrail', max(sizes), port, harness.server_pid(web), prefix)}"
                )
            finally:
                harness.stop(web, interrupt=True)
            print(f"profile: {target}")
    finally:
        harness.stop(worker)
        harness.cleanup_redis(prefix)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{harness.RESULTS}/{prefix}.sqlite3{suffix}").unlink(missing_ok=True)
    keys = ("connected", "received", "last_ms", "p50_ms", "p99_ms", "rss_mb", "redis_conns")
    medians: dict[str, dict[str, float]] = {}
    for figures in runs:
        label = f"{figures['variant']}@{figures['clients']}"
        medians.setdefault(label, {})
    for label in medians:
        chosen = [f for f in runs if f"{f['variant']}@{f['clients']}" == label]
        medians[label] = {k: harness.median(f[k] for f in chosen if f[k] is not None) for k in keys}
    print()
    print(f"fan-out, one event to N SSE clients, medians of {harness.repeats(args)} run(s)")
    rows = [[label, *(m[k] for k in keys)] for label, m in medians.items()]
    print(harness.table(rows, ["variant@N", *keys]))
    base = f"seeds@{seeds_n}"
    mine = f"tasktrail@{seeds_n}"
    ratio = None
    if base in medians and mine in medians and medians[mine]["last_ms"]:
        ratio = round(medians[base]["last_ms"] / medians[mine]["last_ms"], 1)
    harness.save(
        "fanout",
        {"sizes": sizes, "seeds_clients": seeds_n, "repeats": harness.repeats(args),
         "runs": runs, "medians": medians, "ratio_seeds_last_over_tasktrail": ratio},
        args.json,
    )  # fmt: skip
    if ratio is not None:
        print(f"ratio seeds / tasktrail, time to last client at N={seeds_n}: {ratio}x")
    print("MEDIANS " + json.dumps(medians))  # read by --cluster
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
