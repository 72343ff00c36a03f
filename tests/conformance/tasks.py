"""The tasks the conformance matrix runs in real workers.

Every task that a case needs to count takes a ``tag`` (unique per case and worker
variant) and increments ``{KEY_PREFIX}:conf:{tag}:count`` once per execution, so a
case can check that a task ran exactly as often as Celery alone runs it. Tasks that
must be caught mid-run set ``...:started`` and wait for ``...:release`` (a gate the
test opens), never longer than :data:`GATE_LIMIT` seconds.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import redis
from celery import chain, group, shared_task, states
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from django.conf import settings

GATE_LIMIT = 60.0
# Celery publishes a retry before it stores RETRY for the attempt that asked for it; a
# shorter countdown lets a busy worker run (and finish) the next attempt first, and the
# late RETRY then overwrites the outcome in any result backend. Not what is tested here.
RETRY_DELAY = float(os.environ.get("TASKTRAIL_CONFORMANCE_RETRY_DELAY", "1"))


@functools.cache
def redis_client() -> redis.Redis:
    """One client per process (redis-py gives a forked child fresh connections)."""
    return redis.Redis.from_url(str(settings.TASKTRAIL["REDIS_URL"]))


def _redis() -> redis.Redis:
    return redis_client()


def key(tag: str, name: str) -> str:
    return f"{settings.TASKTRAIL['KEY_PREFIX']}:conf:{tag}:{name}"


def count(tag: str) -> int:
    """Count one execution of the task run for ``tag``; returns the executions so far."""
    return int(_redis().incr(key(tag, "count")))


def _wait_for_release(tag: str) -> None:
    client = _redis()
    client.set(key(tag, "started"), "1")
    deadline = time.monotonic() + GATE_LIMIT
    while not client.exists(key(tag, "release")) and time.monotonic() < deadline:
        time.sleep(0.02)


# -- exceptions with awkward shapes ------------------------------------------------


class OrderError(Exception):
    """A custom exception with two positional arguments."""

    def __init__(self, order: str, reason: str) -> None:
        super().__init__(order, reason)
        self.order = order
        self.reason = reason


class LockedError(Exception):
    """Raised with an argument no serializer can encode (a lock)."""


class KeywordOnlyError(Exception):
    """Cannot be rebuilt from its args: its constructor wants a keyword-only code."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


class UnprintableError(Exception):
    """``str()`` of this exception raises."""

    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


class Abort(BaseException):
    """A BaseException that is not an Exception (like KeyboardInterrupt, but harmless)."""


class Opaque:
    """A result no JSON encoder knows."""

    def __init__(self, value: int) -> None:
        self.value = value


class Reducible:
    """A result that tells kombu's JSON encoder how to encode it (``__json__``)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __json__(self) -> dict[str, int]:
        return {"reducible": self.value}


# -- plain outcomes ----------------------------------------------------------------


@shared_task
def add(x: int, y: int) -> int:
    return x + y


@shared_task
def tsum(values: list[int]) -> int:
    return sum(values)


@shared_task
def counted_add(tag: str, x: int, y: int) -> int:
    count(tag)
    return x + y


@shared_task
def fail(message: str = "boom", *_: Any) -> None:
    """Fails; extra positional arguments (a chain's previous result) are ignored."""
    raise ValueError(message)


@shared_task
def counted_fail(tag: str, *_: Any) -> None:
    count(tag)
    raise ValueError("counted failure")


@shared_task
def raise_custom(order: str, reason: str) -> None:
    raise OrderError(order, reason)


@shared_task
def raise_locked() -> None:
    raise LockedError(threading.Lock())


@shared_task
def raise_keyword_only(code: int) -> None:
    raise KeywordOnlyError(code=code)


@shared_task
def raise_unprintable() -> None:
    raise UnprintableError("hidden")


@shared_task
def raise_base_exception(tag: str) -> None:
    count(tag)
    raise Abort("a BaseException that is not an Exception")


@shared_task
def return_kombu_types() -> dict[str, Any]:
    """Types kombu's JSON serializer round-trips (Celery hands them back as these types)."""
    return {
        "when": dt.datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=dt.UTC),
        "day": dt.date(2024, 2, 29),
        "amount": Decimal("12.50"),
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "pair": (1, 2),
    }


@shared_task
def return_set() -> set[int]:
    return {3, 1, 2}


@shared_task
def return_opaque() -> Opaque:
    return Opaque(7)


@shared_task
def return_reducible() -> Reducible:
    return Reducible(7)


# -- time limits and revocation ----------------------------------------------------


@shared_task
def sleeper(tag: str, seconds: float) -> float:
    count(tag)
    _redis().set(key(tag, "started"), "1")
    time.sleep(seconds)
    return seconds


@shared_task(soft_time_limit=0.5)
def soft_limit_caught(tag: str) -> str:
    count(tag)
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "not interrupted"


@shared_task(soft_time_limit=0.5)
def soft_limit_uncaught(tag: str) -> None:
    count(tag)
    time.sleep(10)


@shared_task(time_limit=1)
def hard_limit(tag: str) -> None:
    count(tag)
    time.sleep(10)


# -- retries -------------------------------------------------------------------------


@shared_task(bind=True, max_retries=3)
def retry_once(self: Any, tag: str) -> int:
    executions = count(tag)
    if executions == 1:
        raise self.retry(exc=ConnectionError("transient"), countdown=RETRY_DELAY)
    return executions


@shared_task(bind=True, max_retries=1)
def retry_slowly(self: Any, tag: str) -> int:
    """Retries once with a countdown long enough to catch the RETRY state."""
    executions = count(tag)
    if executions == 1:
        raise self.retry(exc=ConnectionError("slow transient"), countdown=8)
    return executions


@shared_task(bind=True, max_retries=2)
def retry_always(self: Any, tag: str) -> None:
    count(tag)
    raise self.retry(exc=ValueError("never works"), countdown=RETRY_DELAY)


@shared_task(bind=True, max_retries=1)
def retry_without_exc(self: Any, tag: str) -> None:
    count(tag)
    raise self.retry(countdown=RETRY_DELAY)


@shared_task(autoretry_for=(KeyError,), max_retries=2, default_retry_delay=RETRY_DELAY)
def autoretry(tag: str) -> None:
    count(tag)
    raise KeyError("missing")


@shared_task(
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    retry_backoff_max=2,
    retry_jitter=False,
    max_retries=3,
)
def backoff(tag: str) -> int:
    executions = count(tag)
    if executions < 3:
        raise ConnectionError(f"attempt {executions}")
    return executions


@shared_task(bind=True, max_retries=1)
def retry_new_exc(self: Any, tag: str) -> None:
    count(tag)
    try:
        raise ValueError("original")
    except ValueError:
        raise self.retry(exc=OrderError(tag, "replaced"), countdown=RETRY_DELAY) from None


# -- predicates: Reject, Ignore, update_state ------------------------------------------


@shared_task(acks_late=True)
def reject_drop(tag: str) -> None:
    count(tag)
    raise Reject("unprocessable", requeue=False)


@shared_task(acks_late=True)
def reject_requeue(tag: str, times: int) -> int:
    """Rejects with requeue ``times`` times, then succeeds."""
    executions = count(tag)
    if executions <= times:
        raise Reject("try again", requeue=True)
    return executions


@shared_task
def ignore(tag: str) -> None:
    count(tag)
    raise Ignore()


@shared_task(bind=True)
def fail_by_hand(self: Any, tag: str) -> None:
    """The common ``update_state(FAILURE)`` then ``raise Ignore()`` pattern."""
    count(tag)
    self.update_state(
        state=states.FAILURE,
        meta={"exc_type": "ValueError", "exc_message": ["bad input"], "exc_module": "builtins"},
    )
    raise Ignore()


@shared_task(bind=True)
def report_progress(self: Any, tag: str, current: int, total: int) -> str:
    self.update_state(state="PROGRESS", meta={"current": current, "total": total})
    _wait_for_release(tag)
    return "done"


@shared_task(bind=True)
def custom_state(self: Any, tag: str) -> str:
    self.update_state(state="CRUNCHING", meta={"stage": "numbers"})
    _wait_for_release(tag)
    return "crunched"


@shared_task(track_started=True)
def tracked_start(tag: str) -> str:
    _wait_for_release(tag)
    return "started and finished"


@shared_task
def handle_error(task_id: str) -> str:
    """An old-style errback (link_error): Celery sends it as a task of its own."""
    return f"handled {task_id}"


@shared_task
def large(size: int) -> str:
    return "x" * size


@shared_task(ignore_result=True)
def ignored_result(tag: str) -> int:
    count(tag)
    return 42


# -- replace ---------------------------------------------------------------------------


@shared_task(bind=True)
def replace_with_task(self: Any, x: int) -> Any:
    return self.replace(add.s(x, x))


@shared_task(bind=True)
def replace_with_chain(self: Any, first_id: str) -> Any:
    """Replaced by add(1, 1) | add(10); the first step's id is chosen by the caller."""
    return self.replace(chain(add.s(1, 1).set(task_id=first_id), add.s(10)))


@shared_task(bind=True)
def replace_with_group(self: Any, child_ids: list[str]) -> Any:
    """Replaced by a group of add(i, i), one per given id."""
    return self.replace(group(add.s(i, i).set(task_id=cid) for i, cid in enumerate(child_ids)))
