"""Pause/resume a queue and set a task's rate limit on every worker, and remember both.

Celery's remote control (``cancel_consumer``, ``add_consumer``, ``rate_limit``) reaches
only the workers running now. Each change is therefore written to Redis first, and a
worker reads it back while it sets up, before its consumer starts (``celeryd_after_setup``):
a worker started later neither consumes a paused queue nor forgets a rate limit.
Queue names are Celery's (tasktrail records a run's routing key, the same name by default).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import redis
from kombu.exceptions import OperationalError

from . import keys
from .connection import get_redis
from .exceptions import TasktrailError

logger = logging.getLogger("tasktrail")

# Celery's format: a number, optionally per second, minute or hour ("10", "10/m", "0.5/s").
RATE_FORMAT = re.compile(r"^\d+(\.\d+)?(/[smh])?$")
NAME_FORMAT = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")
REPLY_TIMEOUT = 2.0


class BadControl(TasktrailError, ValueError):
    """A queue or task name, or a rate limit, that no worker could use."""


@dataclass(frozen=True)
class Broadcast:
    """What the workers answered: ``{hostname: message}``; ``error`` if the broker did not
    take the broadcast (the change is remembered all the same)."""

    replies: dict[str, str]
    error: str = ""

    def summary(self) -> str:
        if self.error:
            return (
                f"the broker refused the broadcast ({self.error}); running workers were not "
                "told, workers starting later will honour it"
            )
        if not self.replies:
            return "no worker answered (workers starting later will still honour it)"
        return "; ".join(f"{host}: {text}" for host, text in sorted(self.replies.items()))


def _app() -> Any:
    from celery import current_app

    return current_app


def _broadcast(command: str, *args: Any) -> Broadcast:
    try:
        replies = getattr(_app().control, command)(*args, reply=True, timeout=REPLY_TIMEOUT)
    except (OSError, OperationalError) as exc:
        logger.warning("tasktrail: %s not broadcast: %s", command, exc)
        return Broadcast({}, error=str(exc) or type(exc).__name__)
    found: dict[str, str] = {}
    for reply in replies or ():
        for host, answer in reply.items():
            found[host] = str(answer.get("ok") or answer.get("error") or answer)
    return Broadcast(found)


def check_name(name: str, what: str) -> str:
    if not NAME_FORMAT.match(name):
        raise BadControl(f"Give a {what} name: 1 to 200 characters, no spaces or controls.")
    return name


def check_rate(value: str) -> str:
    """An empty value removes the limit; else Celery's ``N``, ``N/s``, ``N/m`` or ``N/h``."""
    value = value.strip()
    if value and not RATE_FORMAT.match(value):
        raise BadControl(
            f"{value[:40]!r} is not a rate limit: use a number per second, minute or hour, "
            'such as "10/m" or "0.5/s" (empty removes the limit).'
        )
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def paused_queues() -> set[str]:
    return {_text(name) for name in get_redis().smembers(keys.paused_queues())}


def rate_limits() -> dict[str, str]:
    raw = get_redis().hgetall(keys.rate_limits())
    return {_text(task): _text(value) for task, value in raw.items()}


def pause(queue: str) -> Broadcast:
    check_name(queue, "queue")
    get_redis().sadd(keys.paused_queues(), queue)  # first, so a worker starting now sees it
    return _broadcast("cancel_consumer", queue)


def resume(queue: str) -> Broadcast:
    check_name(queue, "queue")
    get_redis().srem(keys.paused_queues(), queue)
    return _broadcast("add_consumer", queue)


def set_rate_limit(task: str, value: str) -> Broadcast:
    check_name(task, "task")
    value = check_rate(value)
    if value:
        get_redis().hset(keys.rate_limits(), task, value)
    else:
        get_redis().hdel(keys.rate_limits(), task)
    return _broadcast("rate_limit", task, value)


def on_worker_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Before the worker consumes: leave paused queues out, apply remembered limits."""
    if instance is None:
        return
    try:
        paused, limits = paused_queues(), rate_limits()
    except redis.RedisError as exc:
        logger.warning("tasktrail: queue pauses and rate limits not applied: %s", exc)
        return
    queues = instance.app.amqp.queues
    for name in sorted(paused & set(queues.consume_from)):
        queues.deselect(name)
        logger.warning(
            "tasktrail: queue %s is paused; %s will consume it once resumed", name, sender
        )
    tasks = instance.app.tasks
    for task, value in limits.items():
        if task in tasks:
            tasks[task].rate_limit = value
    consumer = getattr(instance, "consumer", None)
    if limits and consumer is not None:
        consumer.reset_rate_limits()
