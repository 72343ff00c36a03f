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
- Instances: every worker process has an instance id of its own and beats under it too
  (``<prefix>:instances:<hostname>``, with the runs it is executing). Two live
  processes under one name (a common Kubernetes mistake) are told apart, warned about,
  and never settle each other's runs; a run no live instance of its node claims is lost.
- An empty Redis (restarted without its data): the next beat registers the worker and
  its executing runs again; a run Redis forgot entirely is found in the database.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.db import close_old_connections

from . import fallback, keys, naming, sentinel, sweep
from .conf import settings
from .connection import get_pubsub, get_redis
from .exceptions import WorkerLost
from .records import to_datetime
from .status import Status
from .transitions import ANY_ATTEMPT, apply, stamp

logger = logging.getLogger("tasktrail")


def _workers_key() -> str:
    return f"{keys.prefix()}:workers"


def _worker_key(hostname: str) -> str:
    return f"{keys.prefix()}:worker:{hostname}"


def _active_keys(hostname: str) -> list[str]:
    """The sets of runs a worker executes: one per key base (one on a single Redis; on a
    cluster, the transition script adds a run to the set in its own shard)."""
    return [keys.active_set(hostname, base) for base in keys.bases()]


def _active_runs(client: redis.Redis, hostnames: list[str]) -> list[set[bytes]]:
    """For each worker, the runs its active sets hold."""
    pipe = client.pipeline(transaction=False)
    for hostname in hostnames:
        for key in _active_keys(hostname):
            pipe.smembers(key)
    replies: list[Any] = pipe.execute()
    per = len(keys.bases())
    return [set().union(*replies[i * per : (i + 1) * per]) for i in range(len(hostnames))]


def _add_active(client: redis.Redis, hostname: str, run_ids: list[str]) -> None:
    by_key: dict[str, list[str]] = {}
    for run_id in run_ids:
        by_key.setdefault(keys.active_set(hostname, keys.base_of(run_id)), []).append(run_id)
    pipe = client.pipeline(transaction=False)
    for key, members in by_key.items():
        pipe.sadd(key, *members)
    pipe.execute()


def _instances_key(hostname: str) -> str:
    return f"{keys.prefix()}:instances:{hostname}"


def _machine() -> str:
    """Where a pid means something: this machine, its boot and its pid namespace.
    Containers on one host may share the hostname (host networking) and each run its
    worker as pid 1; only the namespace tells them apart."""
    where = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            where += f"/{boot.read().strip()}"
        where += f"/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        pass
    return where


# This process: its beats carry it, so two processes under one name stay two.
INSTANCE = uuid.uuid4().hex[:12]
MACHINE = _machine()
# A run may start just before its instance's beat lists it: it counts as unclaimed
# only if it last changed this long before every live instance's last beat.
CLAIM_MARGIN = 2.0
# A process on this machine whose pid is alive stays live this many LOST_AFTERs without
# a beat (a loaded machine delays beats; a hung process is lost after all).
LAGGING_LIMIT = 10


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One process beating under a worker's name."""

    id: str
    pid: int
    machine: str
    beat: float  # the Redis clock
    active: frozenset[str]
    reserved: frozenset[str] = frozenset()  # taken from the broker, not started yet

    @classmethod
    def parse(cls, id: str, raw: str | bytes) -> Instance | None:
        try:
            data = json.loads(raw)
            return cls(
                id=id, pid=int(data["pid"]), machine=str(data["machine"]),
                beat=float(data["beat"]), active=frozenset(map(str, data["active"])),
                reserved=frozenset(map(str, data.get("reserved", ()))),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None

    def dead_here(self) -> bool:
        """Certainly gone: it ran on this machine and its pid is not alive (or is ours)."""
        if self.id == INSTANCE or self.machine != MACHINE:
            return False
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def alive_here(self) -> bool:
        """Certainly running: another process on this machine whose pid is alive (its
        beats may lag on a loaded machine)."""
        mine = self.id == INSTANCE or self.pid == os.getpid()
        return self.machine == MACHINE and not mine and not self.dead_here()

    def live(self, now: float) -> bool:
        """Beat within ``LOST_AFTER``, or still running here and not hopelessly late."""
        age, lost_after = now - self.beat, float(settings.LOST_AFTER)
        if self.dead_here():
            return False
        return age < lost_after or (self.alive_here() and age < LAGGING_LIMIT * lost_after)


def instances(client: redis.Redis, hostname: str) -> list[Instance]:
    stored: Any = client.hgetall(_instances_key(hostname))
    found = (Instance.parse(k.decode(), v) for k, v in stored.items())
    return [i for i in found if i is not None]


def _executing() -> list[str]:
    """The runs this worker's pool is executing (Celery's own bookkeeping)."""
    from celery.worker import state

    return sorted({str(r.id) for r in list(state.active_requests)})


def _reserved() -> list[str]:
    """The runs this worker took from the broker and has not started (prefetched)."""
    from celery.worker import state

    active = {str(r.id) for r in list(state.active_requests)}
    return sorted({str(r.id) for r in list(state.reserved_requests)} - active)


def _hand_back_reserved(dead: list[Instance], live: list[Instance]) -> int:
    """Messages a dead instance had taken and not started go back to their queue now,
    not when the broker's visibility timeout ends (an hour on Redis by default)."""
    held = frozenset().union(*(i.reserved | i.active for i in live))
    handed = 0
    for run_id in sorted(frozenset().union(*(i.reserved for i in dead)) - held):
        status = _run_state(run_id)[0]
        if status in (Status.READY, Status.RETRYING) and redeliver(run_id) is not None:
            handed += 1
            logger.warning("tasktrail: run %s taken by a lost worker went back to its queue",
                           run_id)  # fmt: skip
    return handed


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
    live_instances: int = 1  # more than one: processes share the name (a mistake)


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
        pipe.hgetall(_instances_key(hostname.decode()))
    replies = pipe.execute()
    actives = _active_runs(client, [hostname.decode() for hostname, _ in beats])
    workers = []
    for index, (hostname, seen) in enumerate(beats):
        raw = {k.decode(): v.decode() for k, v in replies[2 * index].items()}
        found = (Instance.parse(k.decode(), v) for k, v in replies[2 * index + 1].items())
        live = sum(1 for i in found if i is not None and now - i.beat < lost_after)
        workers.append(
            WorkerInfo(
                hostname=hostname.decode(),
                pid=int(raw.get("pid") or 0),
                concurrency=int(raw.get("concurrency") or 0),
                queues=tuple(q for q in raw.get("queues", "").split(",") if q),
                started_at=to_datetime(raw.get("started_at")),
                last_seen=to_datetime(repr(seen)),
                online=now - seen < lost_after,
                active_runs=tuple(sorted(r.decode() for r in actives[index])),
                live_instances=live,
            )
        )
    return workers


def beat(
    hostname: str,
    *,
    concurrency: int,
    queues: list[str],
    started_at: float,
    instance: str = INSTANCE,
    active: Iterable[str] = (),
    reserved: Iterable[str] = (),
) -> bool:
    """Say this process is alive, with the runs it is executing; return whether Redis
    had forgotten this worker (restarted empty, or the worker's first beat)."""
    client = get_redis()
    now = redis_now(client)
    executing = sorted(active)
    ttl = int(settings.STREAM_TTL)
    pipe = client.pipeline(transaction=False)
    pipe.exists(_worker_key(hostname))
    pipe.hset(
        _worker_key(hostname),
        mapping={
            "hostname": hostname,
            "pid": os.getpid(),
            "concurrency": concurrency,
            "queues": ",".join(queues),
            "started_at": stamp(started_at),
            "last_seen": stamp(now),
            "instance": instance,
        },
    )
    pipe.expire(_worker_key(hostname), ttl)
    pipe.zadd(_workers_key(), {hostname: now})
    mine = {"pid": os.getpid(), "machine": MACHINE, "beat": now, "active": executing,
            "reserved": sorted(reserved)}  # fmt: skip
    pipe.hset(_instances_key(hostname), instance, json.dumps(mine))
    pipe.expire(_instances_key(hostname), ttl)
    known = pipe.execute()[0]
    if not known and executing:
        # Redis forgot this worker (restarted empty): its runs count as executing here
        # again, so they are settled if this node dies now.
        _add_active(client, hostname, executing)
    _warn_of_namesakes(client, hostname, instance, now)
    return not known


_warned: set[str] = set()


def _warn_of_namesakes(client: redis.Redis, hostname: str, instance: str, now: float) -> None:
    """Another live process beats under this name: say so loudly, once per process."""
    for other in instances(client, hostname):
        if other.id == instance or other.id in _warned:
            continue
        if now - other.beat < float(settings.LOST_AFTER) and not other.dead_here():
            _warned.add(other.id)
            logger.error(
                "tasktrail: another live worker process uses the name %s (pid %d on %s): "
                "Celery and tasktrail then cannot tell the two apart. Give every worker "
                "a unique name (celery worker -n NAME@%%h, or the pod's name).",
                hostname, other.pid, other.machine.split("/")[0],
            )  # fmt: skip


def _rerunnable(task_name: str) -> bool:
    task = naming.celery_task(task_name)
    return bool(task is not None and getattr(task, "acks_late", False))


def settle_lost_runs(*, me: str = "", forgotten: bool = False) -> int:
    """Settle the runs no live process executes; return how many.

    A run counts as lost when its node's active set holds it, its record says RUNNING on
    that node, no instance of the node that beat within ``LOST_AFTER`` claims it, and it
    last changed before every such instance's last beat (so each had a chance to claim
    it). With no live instance left, that is every run of the node, as before.
    ``forgotten``: Redis lost its data lately, so look in the database for runs no
    active set names any more."""
    del me  # kept for callers: a node's own runs are judged by the same rule
    client = get_redis()
    now = redis_now(client)
    lost_after = float(settings.LOST_AFTER)
    names: Any = client.zrange(_workers_key(), 0, -1, withscores=True)
    settled = 0
    for raw_name, seen in names:
        hostname = raw_name.decode()
        settled += _settle_node(client, hostname, now, silent=now - seen >= lost_after)
    if forgotten:
        settled += _settle_forgotten(client, {n.decode() for n, _ in names}, now)
    return settled


def _settle_node(client: redis.Redis, hostname: str, now: float, *, silent: bool) -> int:
    known = instances(client, hostname)
    live = [i for i in known if i.live(now)]
    silent = silent and not live
    (runs,) = _active_runs(client, [hostname])
    claimed = frozenset().union(*(i.active for i in live))
    unclaimed = sorted(r.decode() for r in runs if r.decode() not in claimed)
    dead = [i for i in known if i not in live]
    gone = [i.id for i in dead]
    if not silent and not live:
        return 0  # beating, but no instance says what it runs (an older version): trust it
    if not unclaimed and not silent:
        if gone:
            _hand_back_reserved(dead, live)
            client.hdel(_instances_key(hostname), *gone)
        return 0
    horizon = min((i.beat for i in live), default=now) - CLAIM_MARGIN if live else None
    # One settler per node and round, even with many peers checking at once. The lock
    # outlives a settler killed while holding it (a node judging itself dies mid-round)
    # for a few heartbeats, not 30 s: meanwhile no one settles that node.
    hold = max(5, math.ceil(3 * float(settings.HEARTBEAT_INTERVAL)))
    if not client.set(f"{keys.prefix()}:settling:{hostname}", INSTANCE, nx=True, ex=hold):
        return 0
    try:
        settled = sum(_settle(run_id, hostname, before=horizon) for run_id in unclaimed)
        _hand_back_reserved(dead, live)
        if not live:
            client.delete(*_active_keys(hostname), _instances_key(hostname))
            client.zrem(_workers_key(), hostname)
        elif gone:
            client.hdel(_instances_key(hostname), *gone)
    finally:
        client.delete(f"{keys.prefix()}:settling:{hostname}")
    return settled


def _run_state(run_id: str) -> tuple[str, str, str, int, str]:
    """Status, task, worker, version and queue of a run: its hot record, or, when Redis
    forgot it (restarted empty), its database row."""
    raw: Any = get_redis().hmget(
        keys.run_hash(run_id), "status", "task", "worker", "version", "queue", "gen"
    )
    if raw[0] is not None:
        status, task, worker, version, queue, gen = (v.decode() if v else "" for v in raw)
        if status == Status.RUNNING and fallback.ended_meanwhile(run_id, int(gen or 1)):
            status = Status.SUCCESSFUL  # any end: it is not lost (see ended_meanwhile)
        return status, task, worker, int(version or 0), queue
    from .models import TaskRun

    row = TaskRun.objects.filter(pk=run_id).values_list(
        "status", "task", "worker", "version", "queue"
    )
    found = row.first()
    return found if found is not None else ("", "", "", 0, "")


def _settle(run_id: str, hostname: str, *, before: float | None = None) -> int:
    """Settle one run of a lost worker: hand its message back, or fail it. ``before``:
    only if the run last changed before then (Redis clock; versions are its microseconds)."""
    status, task, worker, version, queue = _run_state(run_id)
    if status != Status.RUNNING or worker != hostname:
        return 0  # already finished, or picked up again elsewhere
    if before is not None and version / 1_000_000 >= before:
        return 0  # started after a live instance's last beat: it may be that one's
    if _rerunnable(task):
        # acks_late: the broker still holds the original message, with its chain, links
        # and options. It goes back to its queue once, as Celery would have it do; a
        # copy would run the task more often than Celery alone does.
        handed_back = redeliver(run_id) or _back_in_queue(run_id, queue)
        if handed_back is not None:
            apply(
                run_id,
                "store",
                attempt=ANY_ATTEMPT,
                status=Status.READY,
                fields={"worker": "", "reason": "lost"},
                events=[("state", {"run": run_id, "at": time.time(), "reason": handed_back})],
                create={"id": run_id},
            )
            logger.warning("tasktrail: run %s lost with worker %s: %s", run_id, hostname,
                           handed_back)  # fmt: skip
            return 1
    _fail_lost(run_id, hostname)
    return 1


FORGOTTEN_BATCH = 500


def _settle_forgotten(client: redis.Redis, names: set[str], now: float) -> int:
    """Runs RUNNING in the database on a node Redis does not know (it restarted empty,
    and the node died before it beat again): no active set names them any more."""
    from django.db import DatabaseError

    from .models import TaskRun

    cutoff = (now - float(settings.LOST_AFTER)) * 1_000_000
    try:
        rows = list(
            TaskRun.objects.filter(status=Status.RUNNING, version__lt=cutoff)
            .exclude(worker="")
            .exclude(worker__in=names)
            .values_list("id", "worker")[:FORGOTTEN_BATCH]
        )
    except DatabaseError:
        return 0  # the database is down: the next round looks again
    settled = 0
    for run_id, worker in rows:
        if client.exists(_worker_key(worker)):
            continue  # it beat meanwhile
        settled += _settle(run_id, worker, before=now - float(settings.LOST_AFTER))
    return settled


def _back_in_queue(run_id: str, queue: str) -> str | None:
    """Celery put the message back itself (a cold or soft shutdown restores what its
    worker had not acknowledged): the run waits for it, it is not lost."""
    try:
        return None if sweep.undelivered(queue, [run_id]) else "requeued by Celery"
    except Exception:  # the broker cannot be asked: judge as before
        return None


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
    process that had this name and did not stop cleanly (it cannot be running them).
    A process under this name that may still be alive is left alone, and named."""
    load_cancels()
    try:
        client = get_redis()
        if not client.exists(_worker_key(hostname)):
            return
        now = redis_now(client)
        known = instances(client, hostname)
        dead = [i for i in known if i.dead_here()]
        others = [i for i in known if i not in dead and now - i.beat < float(settings.LOST_AFTER)]
        if dead:
            _hand_back_reserved(dead, others)
            client.hdel(_instances_key(hostname), *(i.id for i in dead))
        if others:
            _warn_of_namesakes(client, hostname, INSTANCE, now)
            return  # the settler decides, by what each live instance claims
        (runs,) = _active_runs(client, [hostname])
        settled = sum(_settle(run_id.decode(), hostname) for run_id in sorted(runs))
        client.delete(*_active_keys(hostname))
        if settled:
            logger.warning("tasktrail: settled %d runs of the previous %s", settled, hostname)
    except redis.RedisError as exc:
        logger.warning("tasktrail: could not settle the previous %s's runs: %s", hostname, exc)


def load_cancels() -> None:
    try:
        since = time.time() - float(settings.STREAM_TTL)
        pipe = get_redis().pipeline(transaction=False)
        for base in keys.bases():
            pipe.zremrangebyscore(keys.cancels(base), "-inf", since)
            pipe.zrange(keys.cancels(base), 0, -1)
        ids: list[Any] = pipe.execute()[1::2]
        _revoke_cancelled([i.decode() for per_base in ids for i in per_base])
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
        beaten, scan_until, unreachable_at = False, 0.0, float("-inf")
        while not self.stopping.is_set():
            try:
                forgot = beat(
                    self.hostname,
                    concurrency=self.concurrency,
                    queues=self.queues,
                    started_at=self.started_at,
                    active=_executing(),
                    reserved=_reserved(),
                )
                if forgot and beaten:
                    # Redis restarted empty: for a while, also look for runs of nodes
                    # that died before they could register again.
                    scan_until = time.monotonic() + 3 * float(settings.LOST_AFTER)
                beaten = True
                # Right after Redis was unreachable from here, what it holds is stale:
                # every process is still reconnecting and replaying what it deferred (a
                # run that ended meanwhile still says RUNNING). Judge no one until they
                # had LOST_AFTER to do so, as after a worker's own start.
                if time.monotonic() - unreachable_at >= float(settings.LOST_AFTER):
                    close_old_connections()  # the database fallbacks below, after an outage
                    settle_lost_runs(me=self.hostname, forgotten=time.monotonic() < scan_until)
                    sweep.sweep()
            except redis.RedisError as exc:
                unreachable_at = time.monotonic()
                logger.warning("tasktrail: heartbeat failed: %s", exc)
            except Exception:
                logger.exception("tasktrail: worker services round failed")
            self.stopping.wait(float(settings.HEARTBEAT_INTERVAL))
        try:
            client = get_redis()
            client.hdel(_instances_key(self.hostname), INSTANCE)
            if not client.hlen(_instances_key(self.hostname)):
                client.zrem(_workers_key(), self.hostname)  # a clean stop is not a loss
                client.delete(_worker_key(self.hostname))
        except redis.RedisError:
            pass

    def _follow_cancels(self) -> None:
        while not self.stopping.is_set():
            try:
                pubsub = get_pubsub()  # a cluster's: through a node that answers
                pubsub.subscribe(*(keys.channel_of(keys.cancels(b)) for b in keys.bases()))
                load_cancels()  # what was cancelled while we were not listening
                next_check = time.monotonic() + sentinel.MASTER_CHECK
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        _revoke_cancelled([message["data"].decode()])
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + sentinel.MASTER_CHECK
                        if sentinel.master_moved(pubsub):  # a Sentinel failover
                            pubsub.close()
                            raise redis.ConnectionError("the master moved (Sentinel failover)")
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
