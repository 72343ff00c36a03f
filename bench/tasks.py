"""Tasks the benchmark workers run."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_ready

from bench import settings as bench_settings


def _redis() -> redis.Redis:
    return redis.Redis.from_url(f"{bench_settings.REDIS}/13")


def _wait(key: str, timeout: float) -> None:
    """Block until the benchmark says go (``LPUSH key``), so clients are connected first."""
    deadline = time.monotonic() + timeout
    client = _redis()
    while key and time.monotonic() < deadline:
        if client.blpop([key], timeout=1):  # short blocks: redis-py 8 has a socket timeout
            return


@shared_task
def noop() -> None:
    """The trivial task of the throughput and memory benchmarks."""


@shared_task(bind=True)
def progress_probe(self: Any, count: int, spacing: float, style: str, go: str = "") -> int:
    """Emit ``count`` progress updates ``spacing`` seconds apart, each carrying its send
    time, in one of three styles:

    ``tasktrail``: ``tasktrail.progress()``; ``seeds``: a JSON message published on the
    run's own channel (the seeds' ``send_status``); ``poll``: ``update_state`` with a
    ``PROGRESS`` meta, as celery-progress does. The send times are also kept in Redis.
    """
    _wait(go, 60)
    client = _redis()
    channel = f"{bench_settings.PREFIX}:seeds:{self.request.id}"
    sent: list[float] = []
    if style.startswith("tasktrail"):  # on a single Redis or a cluster
        from tasktrail import progress
    for i in range(1, count + 1):
        now = time.time()
        if style == "tasktrail":
            progress(i, count, repr(now))
        elif style == "seeds":
            payload = {"event_type": "progress", "payload": {"current": i, "sent": now}}
            client.publish(channel, json.dumps(payload))
        else:
            self.update_state(state="PROGRESS", meta={"current": i, "total": count, "sent": now})
        sent.append(now)
        time.sleep(spacing)
    client.rpush(f"{bench_settings.PREFIX}:sent:{self.request.id}", *map(repr, sent))
    return count


@shared_task
def hot_loop(count: int, with_progress: bool, profile: str = "") -> float:
    """``count`` iterations with or without ``progress()``; the seconds they took.

    With ``profile`` (a file path), the loop runs under pyinstrument and its text
    report is written there.
    """
    from tasktrail import progress

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    started = time.perf_counter()
    if with_progress:
        for i in range(count):
            progress(i + 1, count)
    else:
        for _ in range(count):
            pass
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        with open(profile, "w") as out:
            out.write(profiler.output_text(unicode=True, show_all=False))
    return elapsed


@shared_task(bind=True)
def fanout_probe(self: Any, go: str, style: str = "tasktrail") -> float:
    """Wait for go, then emit one progress event (its send time is the message)."""
    _wait(go, 900)
    now = time.time()
    if style.startswith("tasktrail"):  # on a single Redis or a cluster
        from tasktrail import progress

        progress(1, 2, repr(now))
    else:
        channel = f"{bench_settings.PREFIX}:seeds:{self.request.id}"
        payload = {"event_type": "progress", "payload": {"current": 1, "sent": now}}
        _redis().publish(channel, json.dumps(payload))
    _wait(go + ":end", 30)
    return now


def _instrument_flusher() -> None:
    """Count the flusher's rounds, rows, wall and CPU seconds in Redis (``BENCH_INSTRUMENT=1``):
    the flusher runs in a thread of the worker's main process, which profilers that
    sample the main thread do not see."""
    from tasktrail import flusher

    original, upsert = flusher.flush_once, flusher.upsert
    stats_key = f"{bench_settings.PREFIX}:flusher-stats"
    sql = {"wall": 0.0, "cpu": 0.0}

    def timed_upsert(rows: list[dict[str, Any]]) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            upsert(rows)
        finally:
            sql["wall"] += time.perf_counter() - wall
            sql["cpu"] += time.thread_time() - cpu

    def timed(limit: int | None = None) -> int:
        wall, cpu = time.perf_counter(), time.thread_time()
        sql["wall"] = sql["cpu"] = 0.0
        written = original(limit)
        pipe = _redis().pipeline(transaction=False)
        pipe.hincrbyfloat(stats_key, "wall_s", time.perf_counter() - wall)
        pipe.hincrbyfloat(stats_key, "cpu_s", time.thread_time() - cpu)
        pipe.hincrbyfloat(stats_key, "upsert_wall_s", sql["wall"])
        pipe.hincrbyfloat(stats_key, "upsert_cpu_s", sql["cpu"])
        pipe.hincrby(stats_key, "rounds", 1)
        pipe.hincrby(stats_key, "rows", written)
        pipe.execute()
        return written

    flusher.flush_once = timed  # type: ignore[assignment]
    flusher.upsert = timed_upsert  # type: ignore[assignment]


if os.environ.get("BENCH_INSTRUMENT") == "1" and bench_settings.TRACKING:
    _instrument_flusher()


@worker_ready.connect
def _announce_ready(**_: Any) -> None:
    """Tell the benchmark that this worker consumes (it waits for this key)."""
    _redis().set(f"{bench_settings.PREFIX}:worker-ready", "1", ex=3600)
