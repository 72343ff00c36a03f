"""Slow readers and bursts: what hostile stream clients cost everyone else.

One real worker and one uvicorn process. Three runs stay RUNNING (``fanout_probe``
waits for a go key) while this script writes feed events onto their Redis streams
the way ``transition.lua`` does (XADD, then PUBLISH), each carrying its send time.

- ``slow``: a well-behaved SSE client follows run B (20 events/s) and the status
  endpoint of run B is polled, first alone, then while 200 clients that never read
  (4 KiB receive buffer, request sent, never a ``recv``) follow run A. Run A first gets
  5 MB of big events (so the slow clients' socket buffers are full: what makes them
  slow), then 20 events/s of 1 kB while the measurement runs. Figures: p50/p95 event
  latency and status answer time, both phases, their ratio; how many slow clients the
  server cut off (each once its queue of 256 events overflows behind a stuck write).
- ``burst``: N clients (1,000; quick: 300) open run C's stream at once; then the run
  emits one event and finishes. Figures: time to the first event (p50/p95/max), how
  many clients saw the terminal state, how many streams closed before it.

    uv run python bench/slow_readers.py            # both, 200 slow clients, burst of 1,000
    uv run python bench/slow_readers.py --quick    # shorter phases, burst of 300
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

SLOW_CLIENTS = 200


class Pump(threading.Thread):
    """Feed events on one run's stream at a steady rate, each with its send time."""

    def __init__(self, run_id: str, per_second: float, pad: int = 0) -> None:
        super().__init__(daemon=True)
        self.run_id, self.period, self.pad = run_id, 1 / per_second, "x" * pad
        self.halt = threading.Event()

    def run(self) -> None:
        from tasktrail import keys

        client = harness.redis(11)
        stream = keys.run_stream(self.run_id)
        channel = keys.channel(stream)
        number = 0
        while not self.halt.is_set():
            number += 1
            body = json.dumps({"run": self.run_id, "message": f"line {number}",
                               "level": "info", "ts": time.time(), "pad": self.pad})  # fmt: skip
            event_id = client.xadd(stream, {"kind": "feed", "data": body}).decode()
            client.publish(channel, f"{event_id}\x1ffeed\x1f{body}")
            time.sleep(self.period)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


def events_path(run_id: str) -> str:
    from tasktrail.access import make_token

    return f"/tasks/{run_id}/events/?token={make_token(run_id)}"


def status_path(run_id: str) -> str:
    from tasktrail.access import make_token

    return f"/tasks/{run_id}/?token={make_token(run_id)}"


async def _follow(port: int, run_id: str, count: int) -> list[float]:
    client = harness.SSEClient(port, events_path(run_id))
    await client.connect()
    delays: list[float] = []
    try:
        async for event in client.events():
            if event.kind == "feed":
                delays.append(event.received - float(json.loads(event.data)["ts"]))
                if len(delays) >= count:
                    break
    finally:
        client.close()
    return delays


async def _status_times(port: int, run_id: str, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            status, _ = await asyncio.wait_for(
                harness.http_get(reader, writer, status_path(run_id)), 30
            )
            times.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"status endpoint answered {status}")
            await asyncio.sleep(0.05)
    finally:
        writer.close()
    return times


async def _measure(port: int, run_id: str, events: int) -> dict[str, Any]:
    delays, times = await asyncio.gather(
        _follow(port, run_id, events), _status_times(port, run_id, events // 2)
    )
    return {"events": harness.summary_ms(delays), "status": harness.summary_ms(times)}


def never_reading(port: int, path: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def fill(run_id: str, megabytes: int) -> None:
    """Big events, fast: a never-reading client's socket buffers (the kernel grows the
    send buffer to 4 MB) are full within a second or two instead of minutes."""
    from tasktrail import keys

    client = harness.redis(11)
    stream = keys.run_stream(run_id)
    for number in range(megabytes * 4):
        body = json.dumps({"run": run_id, "message": f"fill {number}", "level": "info",
                           "ts": time.time(), "pad": "x" * 256_000})  # fmt: skip
        event_id = client.xadd(stream, {"kind": "feed", "data": body}).decode()
        client.publish(keys.channel(stream), f"{event_id}\x1ffeed\x1f{body}")
        time.sleep(0.05)


def slow_phase(port: int, log: Path, busy: str, calm: str, events: int) -> dict[str, Any]:
    quiet = Pump(calm, per_second=20)
    quiet.start()
    noisy = Pump(busy, per_second=20, pad=1000)
    try:
        unloaded = asyncio.run(_measure(port, calm, events))
        slow = [never_reading(port, events_path(busy)) for _ in range(SLOW_CLIENTS)]
        try:
            time.sleep(2.0)  # every slow client is connected
            fill(busy, 5)
            time.sleep(2.0)
            noisy.start()  # the busy run goes on; the slow clients' queues fill
            loaded = asyncio.run(_measure(port, calm, events))
            cut_while_measuring = log.read_text().count("without completing")
            deadline = time.monotonic() + 30
            while log.read_text().count("without completing") < SLOW_CLIENTS:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            cut = log.read_text().count("without completing")
        finally:
            noisy.stop()
            for sock in slow:
                sock.close()
    finally:
        quiet.stop()
    base, load = unloaded["events"]["p95_ms"], loaded["events"]["p95_ms"]
    return {
        "unloaded": unloaded,
        "loaded": loaded,
        "latency_p95_ratio": round(load / base, 2) if base else None,
        "status_p95_loaded_ms": loaded["status"]["p95_ms"],
        "slow_clients": SLOW_CLIENTS,
        "slow_clients_cut_while_measuring": cut_while_measuring,
        "slow_clients_cut": cut,
    }


async def _burst(port: int, run_id: str, count: int, go: str) -> dict[str, Any]:
    path = events_path(run_id)
    started = time.perf_counter()
    firsts: list[float] = []
    ends = {"terminal": 0, "early": 0, "failed": 0}
    connected = asyncio.Event()

    async def one() -> None:
        client = harness.SSEClient(port, path)
        try:
            await client.connect()
            async for event in client.events():
                if event.kind == "state" and "events_url" in event.data:
                    firsts.append(time.perf_counter() - started)
                    if len(firsts) + ends["failed"] >= count:
                        connected.set()
                if event.kind == "state" and '"SUCCESSFUL"' in event.data:
                    ends["terminal"] += 1
                    return
            ends["early"] += 1
        except Exception:
            ends["failed"] += 1
            if len(firsts) + ends["failed"] >= count:
                connected.set()
        finally:
            client.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connected.wait(), 120)
    harness.redis(13).lpush(go, "1")
    harness.redis(13).lpush(go + ":end", "1")
    await asyncio.wait(tasks, timeout=120)
    return {
        "clients": count,
        "first_event": harness.summary_ms(firsts),
        "saw_terminal": ends["terminal"],
        "closed_early": ends["early"],
        "failed": ends["failed"],
    }


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("both", "slow", "burst"), default="both")
    p.add_argument("--burst", type=int, default=None, help="clients in the burst (1000)")
    p.add_argument("--profile", action="store_true", help="profile uvicorn during the burst")
    args = p.parse_args()
    prefix = harness.unique_prefix("slow")
    env = harness.child_env(mode="tasktrail", prefix=prefix, BENCH_TRACK_STARTED="1")
    harness.raise_nofile()
    if args.dry_run:
        harness.dry_run_checks("celery", "redis", "uvicorn", settings_env=env)
        print("slow_readers: dry run ok")
        return 0
    burst_n = args.burst or (300 if args.quick else 1000)
    events = 60 if args.quick else 160
    harness.prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from bench.tasks import fanout_probe

    worker = harness.start_worker(env)
    figures: dict[str, Any] = {"quick": args.quick}
    gos: list[str] = []
    try:
        for attempt in range(harness.repeats(args)):
            if args.mode in ("both", "slow"):
                web, port = harness.start_uvicorn(env, name="web-slow")
                log = harness.RESULTS / f"{prefix}-web-slow.log"
                try:
                    go = [f"{prefix}:go:{uuid.uuid4().hex}" for _ in range(2)]
                    gos += go
                    busy, calm = (fanout_probe.delay(key).id for key in go)
                    time.sleep(1.0)
                    result = slow_phase(port, log, busy, calm, events)
                finally:
                    harness.stop(web)
                    for key in go:  # the probes end: the worker's two slots are free
                        harness.redis(13).lpush(key, "1")
                        harness.redis(13).lpush(key + ":end", "1")
                figures.setdefault("slow", []).append(result)
                print(f"run {attempt + 1} slow: {json.dumps(result)}", flush=True)
            if args.mode in ("both", "burst"):
                profile = harness.RESULTS / "slow_readers.burst.profile.txt"
                web, port = harness.start_uvicorn(
                    env, name="web-burst", profile=profile if args.profile else None
                )
                try:
                    go1 = f"{prefix}:go:{uuid.uuid4().hex}"
                    gos.append(go1)
                    run_id = fanout_probe.delay(go1).id
                    time.sleep(1.0)
                    result = asyncio.run(_burst(port, run_id, burst_n, go1))
                finally:
                    harness.stop(web, interrupt=args.profile)
                figures.setdefault("burst", []).append(result)
                print(f"run {attempt + 1} burst: {json.dumps(result)}", flush=True)
    finally:
        for key in gos:  # release any probe still waiting
            harness.redis(13).lpush(key, "1")
            harness.redis(13).lpush(key + ":end", "1")
        harness.stop(worker)
        harness.cleanup_redis(prefix)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{harness.RESULTS}/{prefix}.sqlite3{suffix}").unlink(missing_ok=True)
    harness.save("slow_readers", figures, args.json)
    print()
    for result in figures.get("slow", []):
        print(
            f"slow readers: p95 event latency {result['unloaded']['events']['p95_ms']} ms alone, "
            f"{result['loaded']['events']['p95_ms']} ms beside {SLOW_CLIENTS} never-reading "
            f"clients (ratio {result['latency_p95_ratio']}x); status p95 "
            f"{result['unloaded']['status']['p95_ms']} -> {result['status_p95_loaded_ms']} ms; "
            f"{result['slow_clients_cut']}/{SLOW_CLIENTS} slow clients cut off"
        )
    for result in figures.get("burst", []):
        first = result["first_event"]
        print(
            f"burst of {result['clients']}: first event p50 {first['p50_ms']} ms, p95 "
            f"{first['p95_ms']} ms; {result['saw_terminal']} saw the end, "
            f"{result['closed_early']} closed early, {result['failed']} failed"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
