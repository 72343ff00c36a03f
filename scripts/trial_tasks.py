"""Counted tasks of the trials.

Every execution of a body first does ``INCR <prefix>:trial:exec:<key>`` in tasktrail's
Redis, so a trial knows how many times a body really ran, whatever any record says.
Kill-trial heads also leave the pid that runs them (``<prefix>:trial:pids``) and hold
their first execution (the one that is killed); later executions return at once.
Skew-trial tasks leave, per attempt, the worker that ran it and how far its clock is
from Redis's (``<prefix>:trial:hosts:<key>``, ``<prefix>:trial:offsets``).

The four kill-trial heads differ only in Celery's options for a lost worker:

=========== ============ ======================= ======================
task        ``acks_late``  ``reject_on_worker_lost`` ``retry_on_worker_lost``
=========== ============ ======================= ======================
early       no           no                      no
late        yes          no                      no
requeue     yes          yes                     no
retry       no           no                      yes (countdown 0)
=========== ============ ======================= ======================
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Task, shared_task
from django.conf import settings


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(str(settings.TASKTRAIL["REDIS_URL"]))


def _key(*parts: str) -> str:
    return ":".join([str(settings.TASKTRAIL["KEY_PREFIX"]), "trial", *parts])


def executions_key(key: str) -> str:
    return _key("exec", key)


def pids_key() -> str:
    return _key("pids")


def hosts_key(key: str) -> str:
    return _key("hosts", key)


def offsets_key() -> str:
    return _key("offsets")


def executions(keys: list[str]) -> list[int]:
    """How many times each key's body ran (one round trip)."""
    if not keys:
        return []
    raw: Any = redis_client().mget([executions_key(k) for k in keys])
    return [int(v or 0) for v in raw]


def _held(key: str, hold: float) -> int:
    client = redis_client()
    count = int(client.incr(executions_key(key)))
    if count == 1:
        client.hset(pids_key(), key, os.getpid())
        time.sleep(hold)  # the execution the trial kills
    return count


@shared_task(name="trial.early")
def early(key: str, hold: float) -> int:
    """Acknowledged on receipt: Celery never runs it again once it started."""
    return _held(key, hold)


@shared_task(name="trial.late", acks_late=True)
def late(key: str, hold: float) -> int:
    """Acknowledged when done; a lost pool process fails it (no reject_on_worker_lost)."""
    return _held(key, hold)


@shared_task(name="trial.requeue", acks_late=True, reject_on_worker_lost=True)
def requeue(key: str, hold: float) -> int:
    """Acknowledged when done; a lost pool process puts its message back."""
    return _held(key, hold)


@shared_task(name="trial.retry", retry_on_worker_lost=True, default_retry_delay=0)  # type: ignore[call-overload, untyped-decorator]
def retry(key: str, hold: float) -> int:
    """Acknowledged on receipt; a lost pool process makes Celery retry it at once."""
    return _held(key, hold)


@shared_task(name="trial.next")
def next_step(previous: Any, key: str) -> dict[str, Any]:
    """A chain's second step: counted, never held."""
    count = int(redis_client().incr(executions_key(key)))
    return {"previous": previous, "count": count}


# --------------------------------------------------------------------------- skew trial


def _attempt(task: Task[Any, Any], key: str, work: float) -> int:
    """Count the attempt, note which worker ran it and how far its clock is off, then
    work ``work`` seconds (so a flusher writes this attempt's state before the next)."""
    client = redis_client()
    seconds, micros = client.time()
    offset = time.time() - (seconds + micros / 1e6)
    hostname = str(task.request.hostname or "")
    pipe = client.pipeline(transaction=False)
    pipe.incr(executions_key(key))
    pipe.rpush(hosts_key(key), hostname)
    pipe.hset(offsets_key(), hostname, f"{offset:.3f}")
    count, *_ = pipe.execute()
    time.sleep(work)
    return int(count)


@shared_task(name="trial.flaky", bind=True, max_retries=None)
def flaky(
    self: Task[Any, Any], key: str, retries: int, countdown: float, end: str, work: float = 0.0
) -> Any:
    """Retry ``retries`` times (``countdown`` seconds apart), then end as ``end`` says:
    ``success`` returns, ``raise`` raises RuntimeError, ``exhaust`` retries once more
    than ``max_retries`` allows (Celery fails it with the retry's exception),
    ``revoke`` keeps retrying until the trial revokes it."""
    attempt = _attempt(self, key, work)
    if end == "exhaust":
        raise self.retry(exc=ValueError(f"{key}: attempt {attempt}"), countdown=countdown,
                         max_retries=retries)  # fmt: skip
    if end == "revoke" or attempt <= retries:
        raise self.retry(exc=ValueError(f"{key}: attempt {attempt}"), countdown=countdown)
    if end == "raise":
        raise RuntimeError(f"{key}: gave up after {attempt} attempts")
    return {"key": key, "attempts": attempt}


@shared_task(
    name="trial.autoretry",
    bind=True,
    autoretry_for=(ValueError,),
    retry_kwargs={"countdown": 0, "max_retries": 10},
)
def autoretry(self: Task[Any, Any], key: str, retries: int, work: float = 0.0) -> Any:
    """Celery's ``autoretry_for`` flavour: raise ValueError ``retries`` times, then return."""
    attempt = _attempt(self, key, work)
    if attempt <= retries:
        raise ValueError(f"{key}: attempt {attempt}")
    return [key, attempt]
