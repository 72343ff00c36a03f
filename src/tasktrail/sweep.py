"""Runs that wait for a message the broker no longer holds are settled, not left READY.

A publish that fails after tasktrail recorded the run (kombu cannot encode an
argument, the broker refuses it), a purged queue, a deleted queue: Celery itself
reports such ids as PENDING for ever. Every transition that leaves a run waiting
(READY or RETRYING) scores it in ``<prefix>:waiting``; one worker at a time (a Redis
lock) looks at the runs that have waited ``UNDELIVERED_AFTER`` seconds past their due
time, and asks the broker whether it holds their messages:

- Redis broker: each queue the runs were sent to (with its priority lists) and the
  unacknowledged hash (messages a worker reserved or holds for an ETA) are read once
  per round; a run whose id appears in none of them is settled.
- AMQP: a queue that no longer exists settles its runs; for a queue that exists, a run
  is settled only when the queue is empty and no worker reports it reserved,
  scheduled or active (a message inside a non-empty queue cannot be seen).

Settled means FAILED with ``error.reason`` ``never_delivered``. Each run records which
broker it was published to (a fingerprint of the URL), and a worker judges only the
runs of its own broker: projects that share a key prefix across brokers stay safe.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import defaultdict
from functools import lru_cache
from typing import Any

from . import fallback, keys, outcomes
from .conf import settings
from .connection import get_redis
from .exceptions import NeverDelivered
from .status import Status

logger = logging.getLogger("tasktrail")

BATCH = 500
MAX_MESSAGES_READ = 200_000  # per queue and round: past that, no run of it is judged
_ID = re.compile(rb'"id": ?"([^"]+)"')


@lru_cache(maxsize=8)
def _fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def broker_id() -> str:
    """A fingerprint of the Celery app's broker URL (the password never leaves it)."""
    from celery import current_app

    return _fingerprint(str(current_app.conf.broker_url or ""))


def sweep(now: float | None = None) -> int:
    """One round; return how many runs were settled. Safe to call from every worker."""
    client = get_redis()
    wait = float(settings.UNDELIVERED_AFTER)
    if not client.set(f"{keys.prefix()}:sweeping", "1", nx=True, ex=max(5, int(wait / 2))):
        return 0  # another worker swept a moment ago
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for base in keys.bases():  # one waiting set per shard on a cluster
        pipe.zrangebyscore(keys.waiting_set(base), "-inf", now - wait, 0, BATCH)
    candidates: list[bytes] = [i for found in pipe.execute() for i in found]
    if not candidates:
        return 0
    by_queue: dict[str, list[str]] = defaultdict(list)
    pipe = client.pipeline(transaction=False)
    for raw_id in candidates:
        pipe.hmget(
            keys.run_hash(raw_id.decode()), "status", "queue", "next_attempt_at", "broker", "gen"
        )
    mine = broker_id().encode()
    for raw_id, (status, queue, due, broker, gen) in zip(candidates, pipe.execute(), strict=True):
        run_id = raw_id.decode()
        if status is None or status.decode() not in (Status.READY, Status.RETRYING):
            client.zrem(keys.waiting_set(keys.base_of(run_id)), run_id)  # expired, or moved on
            continue
        if broker and broker != mine:
            continue  # another broker's run: its own workers judge it
        if due and float(due) > now - wait:
            continue  # an ETA or countdown not long past: the broker may hold it late
        if fallback.ended_meanwhile(run_id, int(gen or 1)):
            continue  # it ran and ended while Redis was away: the record catches up
        by_queue[(queue or b"").decode()].append(run_id)
    settled = 0
    for queue, run_ids in by_queue.items():
        for run_id in undelivered(queue, run_ids):
            settled += _settle(run_id, queue)
    return settled


def undelivered(queue: str, run_ids: list[str]) -> list[str]:
    """The runs of ``run_ids`` whose message the broker holds neither in ``queue`` nor
    unacknowledged."""
    from celery import current_app

    with current_app.connection_for_write() as connection:
        if connection.transport.driver_type == "redis":
            held = _held_by_redis(connection.default_channel, queue or _default_queue())
            return [] if held is None else [r for r in run_ids if r.encode() not in held]
        return _undelivered_amqp(connection, queue or _default_queue(), run_ids)


def _default_queue() -> str:
    from celery import current_app

    return str(current_app.conf.task_default_queue)


def unprefixed_key(channel: Any, name: str) -> str:
    """``name`` as stored, for the commands kombu does not prefix itself (``HSCAN``,
    ``LRANGE``) when its Redis transport has a ``global_keyprefix``."""
    return str(getattr(channel, "global_keyprefix", "") or "") + name


def _held_by_redis(channel: Any, queue: str) -> set[bytes] | None:
    """Ids of the messages the Redis broker holds for ``queue`` or unacknowledged;
    None when there are too many to read this round."""
    client = channel.client
    held: set[bytes] = set()
    lists = [channel._q_for_pri(queue, priority) for priority in channel.priority_steps]
    for name in dict.fromkeys(lists):
        if client.llen(name) > MAX_MESSAGES_READ:  # LLEN: kombu prefixes it
            return None
        for start in range(0, MAX_MESSAGES_READ, 1000):
            chunk = client.lrange(unprefixed_key(channel, name), start, start + 999)
            for message in chunk:
                held.update(_ID.findall(message))
            if len(chunk) < 1000:
                break
    unacked = unprefixed_key(channel, channel.unacked_key)
    for _, value in client.hscan_iter(unacked, count=1000):
        held.update(_ID.findall(value))
    return held


def _undelivered_amqp(connection: Any, queue: str, run_ids: list[str]) -> list[str]:
    from amqp.exceptions import NotFound
    from celery import current_app

    try:
        _, messages, _ = connection.default_channel.queue_declare(queue, passive=True)
    except NotFound:
        return run_ids  # the queue is gone, and its messages with it
    if messages:
        return []
    inspect = current_app.control.inspect(timeout=1.0)
    held: set[str] = set()
    reply: Any
    for reply in (inspect.reserved(), inspect.scheduled(), inspect.active()):
        for entries in (reply or {}).values():
            for entry in entries:
                request: Any = entry.get("request", entry)
                held.add(str(request.get("id", "")))
    return [r for r in run_ids if r not in held]


def _settle(run_id: str, queue: str) -> int:
    message = (
        f"The broker no longer holds this run's message (queue {queue!r}): its publish "
        "failed, or the queue was purged or deleted. Celery will never run it."
    )
    applied = outcomes.failed_outside_celery(
        run_id, NeverDelivered(message), reason="never_delivered"
    )
    get_redis().zrem(keys.waiting_set(keys.base_of(run_id)), run_id)
    if applied is not None:
        logger.warning("tasktrail: run %s was never delivered (queue %r): failed", run_id, queue)
        return 1
    return 0
