"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

from tasktrail import keys


def client() -> redis.Redis:
    return redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"])


def stored_events(run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The run's event log as (id, kind, data), oldest first."""
    entries: Any = client().xrange(keys.run_stream(run_id))
    return [(i.decode(), v[b"kind"].decode(), json.loads(v[b"data"])) for i, v in entries]


def eventually[T](probe: Callable[[], T | None], timeout: float = 15.0, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(every)
