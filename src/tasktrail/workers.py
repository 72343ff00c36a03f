"""Services each Celery worker's main process runs beside the pool.

- Heartbeats: ``<prefix>:worker:<hostname>`` (a hash) and ``<prefix>:workers`` (a
  sorted set by last beat), read by :func:`list_workers`.
- Durable cancel: the ids in ``<prefix>:cancels`` go into Celery's revoked set at start,
  and new ones as they are published, so a cancelled run never starts here.
- Lost runs: every round, a worker looks for peers that stopped beating for
  ``LOST_AFTER`` seconds and settles the runs they were executing. An ``acks_late``
  run's original message goes back to its queue once (on Redis, restored from kombu's
  unacked hash as its visibility timeout would; AMQP redelivers it by itself); any
  other run is ``FAILED`` naming the lost worker, since Celery will not run it again.
  Nothing is ever copied. Detection never depends on the dead worker's own process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from . import keys, sweep
from .conf import settings
from .connection import get_redis
from .exceptions import WorkerLost
from .records import to_datetime
from .status import Status
from .transitions import ANY_ATTEMPT, apply, stamp

logger = logging.getLogger("tasktrail")


def _workers_key() -> str:
    return f"{keys.prefix()}:workers"


def _worker_key(hostname: str) -> str:
    return f"{keys.prefix()}:worker:{hostname}"


def _active_key(hostname: str) -> str:
    return f"{keys.prefix()}:active:{hostname}"


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    hostname: str
    pid: int
    concurrency: int
    queues: tuple[str, ...]
    started_at: datetime | None
    last_seen: datetime | None
    online: bool
    active_runs: tuple[str, ...]


def redis_now(client: redis.Redis) -> float:
    """The Redis server's clock: heartbeats and the lost-worker cutoff are compared on
    the one clock every host shares, never one host's against another's."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000


def list_workers() -> list[WorkerInfo]:
    """Every worker seen recently, online or not, with the runs it is executing."""
    client = get_redis()
    now = redis_now(client)
    lost_after = float(settings.LOST_AFTER)
    beats: Any = client.zrange(_workers_key(), 0, -1, withscores=True)
    pipe = client.pipeline(transaction=False)
    for hostname, _ in beats:
        pipe.hgetall(_worker_key(hostname.decode()))
        pipe.smembers(_active_key(hostname.decode()))
    replies = pipe.execute()
    workers = []
    for index, (hostname, seen) in enumerate(beats):
        raw = {k.decode(): v.decode() for k, v in replies[2 * index].items()}
        workers.append(
            WorkerInfo(
                hostname=hostname.decode(),
                pid=int(raw.get("pid") or 0),
                concurrency=int(raw.get("concurrency") or 0),
                queues=tuple(q for q in raw.get("queues", "").split(",") if q),
                started_at=to_datetime(raw.get("started_at")),
                last_seen=to_datetime(repr(seen)),
                online=now - seen < lost_after,
                active_runs=tuple(sorted(r.decode() for r in replies[2 * index + 1])),
            )
        )
    return workers


def beat(hostname: str, *, concurrency: int, queues: list[str], started_at: float) -> None:
    client = get_redis()
    now = redis_now(client)
    pipe = client.pipeline(transaction=False)
    pipe.hset(
        _worker_key(hostname),
        mapping={
            "hostname": hostname,
            "pid": os.getpid(),
            "concurrency": concurrency,
            "queues": ",".join(queues),
            "started_at": stamp(started_at),
            "last_seen": stamp(now),
        },
    )
    pipe.expire(_worker_key(hostname), int(settings.STREAM_TTL))
    pipe.zadd(_workers_key(), {hostname: now})
    pipe.execute()


def _rerunnable(task_name: str) -> bool:
    from celery import current_app

    task = current_app.tasks.get(task_name)
    return bool(task is not None and getattr(task, "acks_late", False))


def settle_lost_runs(*, me: str = "") -> int:
    """Settle the runs of workers silent for ``LOST_AFTER`` seconds; return how many."""
    client = get_redis()
    cutoff = redis_now(client) - float(settings.LOST_AFTER)
    silent: Any = client.zrangebyscore(_workers_key(), "-inf", cutoff)
    settled = 0
    for raw_name in silent:
        hostname = raw_name.decode()
        if hostname == me:
            continue
        # One settler per lost worker, even with many peers checking at once.
        if not client.set(f"{keys.prefix()}:settling:{hostname}", me or "?", nx=True, ex=120):
            continue
        runs: Any = client.smembers(_active_key(hostname))
        for run_id in sorted(r.decode() for r in runs):
            settled += _settle(run_id, hostname)
        client.delete(_active_key(hostname))
        client.zrem(_workers_key(), hostname)
    return settled


def _settle(run_id: str, hostname: str) -> int:
    """Settle one run of a lost worker: hand its message back, or fail it."""
    raw: Any = get_redis().hmget(keys.run_hash(run_id), "status", "task", "worker")
    status, task, worker = (v.decode() if v else "" for v in raw)
    if status != Status.RUNNING or worker != hostname:
        return 0  # already finished, or picked up again elsewhere
    if _rerunnable(task):
        # acks_late: the broker still holds the original message, with its chain, links
        # and options. It goes back to its queue once, as Celery would have it do; a
        # copy would run the task more often than Celery alone does.
        handed_back = redeliver(run_id)
        if handed_back is not None:
            apply(
                run_id,
                "store",
                attempt=ANY_ATTEMPT,
                status=Status.READY,
                fields={"worker": "", "reason": "lost"},
                events=[("state", {"run": run_id, "at": time.time(), "reason": handed_back})],
            )
            logger.warning("tasktrail: run %s lost with worker %s: %s", run_id, hostname,
                           handed_back)  # fmt: skip
            return 1
    _fail_lost(run_id, hostname)
    return 1


def redeliver(run_id: str) -> str | None:
    """Give a dead worker's unacknowledged message of this run back to its queue,
    exactly once; return what happened, or None when the broker no longer holds it
    (acknowledged, or never an acks_late delivery)."""
    from celery import current_app

    with current_app.connection_for_write() as connection:
        if connection.transport.driver_type != "redis":
            # AMQP gives an unacknowledged message back by itself when the dead
            # worker's connection closes: nothing to do but wait for it.
            return "requeued by the broker"
        channel: Any = connection.default_channel
        qos = channel.qos
        unacked = sweep.unprefixed_key(channel, qos.unacked_key)  # HSCAN: kombu won't prefix
        delivery_tag = _unacked_tag(channel.client, unacked, run_id)
        if delivery_tag is None:
            return None
        # kombu's own restore (the one its visibility timeout uses): a transaction on
        # the unacked hash, so the message is restored once even if kombu races us.
        qos.restore_by_tag(delivery_tag, leftmost=True)
        return "requeued"


def _unacked_tag(client: Any, unacked_key: str, run_id: str) -> str | None:
    """The delivery tag of this run's message among the unacknowledged ones. The tag
    never reaches the task (kombu sets it at publish, Celery keeps it in the main
    process), so look for the id: the hash holds only reserved messages, and this
    runs only for a lost worker's runs."""
    needle = f'"id": "{run_id}"'.encode()
    for tag, value in client.hscan_iter(unacked_key, count=1000):
        if needle not in value:
            continue
        try:
            payload = json.loads(value)[0]
        except (ValueError, IndexError, TypeError):
            continue
        if str(payload.get("headers", {}).get("id")) == run_id:
            return tag.decode() if isinstance(tag, bytes) else str(tag)
    return None


def _fail_lost(run_id: str, hostname: str) -> None:
    from . import outcomes

    message = (
        f"Worker {hostname} stopped (no heartbeat for {settings.LOST_AFTER}s) while running "
        "this run; its message was acknowledged, so Celery will not run it again."
    )
    outcomes.failed_outside_celery(
        run_id, WorkerLost(message), reason="lost", create={"id": run_id}
    )
    logger.warning("tasktrail: failed run %s lost with worker %s", run_id, hostname)


def prepare(hostname: str) -> None:
    """Before this worker consumes anything: load the cancellations (so a run cancelled
    while no worker was online never starts here), and settle the runs of a previous
    process that had this name and did not stop cleanly (it cannot be running them)."""
    load_cancels()
    try:
        client = get_redis()
        if client.exists(_worker_key(hostname)):
            runs: Any = client.smembers(_active_key(hostname))
            settled = sum(_settle(run_id.decode(), hostname) for run_id in sorted(runs))
            client.delete(_active_key(hostname))
            if settled:
                logger.warning("tasktrail: settled %d runs of the previous %s", settled, hostname)
    except redis.RedisError as exc:
        logger.warning("tasktrail: could not settle the previous %s's runs: %s", hostname, exc)


def load_cancels() -> None:
    try:
        since = time.time() - float(settings.STREAM_TTL)
        client = get_redis()
        client.zremrangebyscore(f"{keys.prefix()}:cancels", "-inf", since)
        ids: Any = client.zrange(f"{keys.prefix()}:cancels", 0, -1)
        _revoke_cancelled([i.decode() for i in ids])
    except redis.RedisError as exc:
        logger.warning("tasktrail: could not load cancellations: %s", exc)


def _revoke_cancelled(run_ids: list[str]) -> None:
    from celery.worker import state

    for run_id in run_ids:
        state.revoked.add(run_id)


class WorkerServices(threading.Thread):
    """Heartbeat, cancellation follower and lost-run settler of one worker node."""

    def __init__(self, hostname: str, concurrency: int, queues: list[str]) -> None:
        super().__init__(name="tasktrail-worker-services", daemon=True)
        self.hostname = hostname
        self.concurrency = concurrency
        self.queues = queues
        self.started_at = time.time()
        self.stopping = threading.Event()
        self._follower: threading.Thread | None = None

    def run(self) -> None:
        load_cancels()
        self._follower = threading.Thread(
            target=self._follow_cancels, name="tasktrail-cancels", daemon=True
        )
        self._follower.start()
        while not self.stopping.is_set():
            try:
                beat(
                    self.hostname,
                    concurrency=self.concurrency,
                    queues=self.queues,
                    started_at=self.started_at,
                )
                settle_lost_runs(me=self.hostname)
                sweep.sweep()
            except redis.RedisError as exc:
                logger.warning("tasktrail: heartbeat failed: %s", exc)
            except Exception:
                logger.exception("tasktrail: worker services round failed")
            self.stopping.wait(float(settings.HEARTBEAT_INTERVAL))
        try:
            client = get_redis()
            client.zrem(_workers_key(), self.hostname)  # a clean stop is not a loss
            client.delete(_worker_key(self.hostname))
        except redis.RedisError:
            pass

    def _follow_cancels(self) -> None:
        while not self.stopping.is_set():
            try:
                pubsub = get_redis().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(f"{keys.prefix()}:ch:cancels")
                load_cancels()  # what was cancelled while we were not listening
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        _revoke_cancelled([message["data"].decode()])
            except redis.RedisError as exc:
                logger.warning("tasktrail: cancellation follower lost Redis: %s", exc)
                self.stopping.wait(1.0)


_services: WorkerServices | None = None


def start(hostname: str, concurrency: int, queues: list[str]) -> None:
    global _services
    if _services is None or not _services.is_alive():
        _services = WorkerServices(hostname, concurrency, queues)
        _services.start()


def stop() -> None:
    global _services
    if _services is not None:
        _services.stopping.set()
        _services.join(5)
        _services = None
