"""Latency histograms kept in Redis: queue wait and runtime per task and queue.

The transition script (``lua/transition.lua``) counts each run once, when it first
starts (queue wait) and when it succeeds (runtime), into one Redis hash per histogram:
``task|queue|<upper bound>`` -> runs in that bucket, ``task|queue|sum`` -> seconds. The
counts only grow, so Prometheus's ``rate()`` and ``histogram_quantile()`` work on them,
and every web process serving ``/metrics`` reads the same numbers (a histogram observed
in a web process's memory would see none of the workers' runs, and each process would
answer differently).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import redis

from . import keys

# Seconds; close to Prometheus's defaults, stretched for tasks that take minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0, 900.0, 3600.0)  # fmt: skip
BOUNDS = ",".join(repr(bound) for bound in BUCKETS)  # as the script compares them
NAMES = ("queue_wait", "runtime")


@dataclass(kw_only=True)
class Series:
    """One task and queue's histogram: runs per bucket (not cumulated) and their sum."""

    task: str
    queue: str
    counts: dict[str, int] = field(default_factory=dict)
    total: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, runs at or below it)`` for every bound and ``+Inf``, as Prometheus wants."""
        running = 0
        out = []
        for bound in BUCKETS:
            running += self.counts.get(repr(bound), 0)
            out.append((repr(bound), float(running)))
        running += self.counts.get("+Inf", 0)
        out.append(("+Inf", float(running)))
        return out


def key(name: str, base: str = "") -> str:
    return f"{base or keys.prefix()}:stats:{name}"


def read_summed(client: redis.Redis, names: list[str]) -> dict[bytes, bytes]:
    """Hashes of counters (one per key base on a cluster) added up field by field."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    replies: list[dict[bytes, bytes]] = pipe.execute()
    if len(replies) == 1:
        return replies[0]
    totals: dict[bytes, float] = defaultdict(float)
    for reply in replies:
        for field_name, value in reply.items():
            totals[field_name] += float(value)
    return {k: (repr(v) if not v.is_integer() else str(int(v))).encode() for k, v in totals.items()}


def parse(raw: dict[bytes, bytes]) -> list[Series]:
    """The hash the script writes, as one :class:`Series` per task and queue."""
    found: dict[tuple[str, str], Series] = {}
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for label, value in raw.items():
        parts = label.decode().rsplit("|", 2)  # a task name may hold "|"; the end never
        if len(parts) != 3:
            continue
        task, queue, bucket = parts
        series = found.setdefault((task, queue), Series(task=task, queue=queue))
        if bucket == "sum":
            totals[(task, queue)] = float(value)
        else:
            series.counts[bucket] = int(value)
    for pair, total in totals.items():
        found[pair].total = total
    return [found[pair] for pair in sorted(found)]


def read(client: redis.Redis, name: str) -> list[Series]:
    """One histogram from Redis."""
    return parse(read_summed(client, [key(name, base) for base in keys.bases()]))
