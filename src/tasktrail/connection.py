"""Redis clients: one pool per process (and per event loop for asyncio)."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aredis
from django.core.exceptions import ImproperlyConfigured

from .conf import settings

# How long a command waits for a pooled connection before PoolExhausted.
POOL_WAIT = 20.0

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
# Web processes bound their sync pool. A worker does not: each of its pool's threads or
# greenlets needs a connection while it records a transition, and its cancel follower
# holds one for good; a bounded pool there would turn load into a false outage.
_bounded = True


def in_worker() -> None:
    """This process is a Celery worker (its pool children inherit it): unbounded pool."""
    global _bounded
    with _lock:
        _bounded = False
        _clients.clear()


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def redis_url() -> str:
    url = settings.REDIS_URL
    if not url:
        raise ImproperlyConfigured(
            "tasktrail needs TASKTRAIL = {'REDIS_URL': 'redis://host:6379/0'} in your settings."
        )
    return str(url)


def client_name() -> str:
    """Shown by ``CLIENT LIST``: which process holds a connection."""
    return f"tasktrail-{os.getpid()}"


class PoolExhausted(redis.ConnectionError):
    """Every pooled connection stayed busy for the whole wait: the process is
    overloaded, Redis itself may be fine (unlike an unreachable Redis)."""


def _exhausted(size: int | None, wait: float) -> PoolExhausted:
    return PoolExhausted(
        f"all {size} pooled Redis connections of this process stayed busy for {wait:g} s "
        "(pool exhaustion under load, not an outage; TASKTRAIL['REDIS_POOL_SIZE'] sets the pool)"
    )


class _BoundedPool(redis.BlockingConnectionPool):
    """Threads (sync views run in a thread each under ASGI) share a bounded pool, so a
    burst of requests does not leave one idle connection per thread behind."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            if str(exc) != "No connection available.":
                raise
            raise _exhausted(self.max_connections, float(self.timeout or 0)) from exc


class _BoundedAsyncPool(aredis.BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            if str(exc) != "No connection available.":
                raise
            raise _exhausted(self.max_connections, float(self.timeout or 0)) from exc


def get_redis() -> redis.Redis:
    """The process-wide client for ``TASKTRAIL['REDIS_URL']`` (fork-safe: redis-py resets
    its pool in a child process), over at most ``REDIS_POOL_SIZE`` connections outside
    workers (see :func:`in_worker`)."""
    url = redis_url()
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                options: dict[str, Any] = {
                    "socket_connect_timeout": 2,
                    "socket_timeout": 5,
                    "health_check_interval": 30,
                    "client_name": client_name(),
                }
                pool = (
                    _BoundedPool.from_url(
                        url,
                        max_connections=int(settings.REDIS_POOL_SIZE),
                        timeout=POOL_WAIT,
                        **options,
                    )
                    if _bounded
                    else redis.ConnectionPool.from_url(url, **options)
                )
                client = redis.Redis(connection_pool=pool)
                _clients[url] = client
    return client


def get_async_redis() -> aredis.Redis:
    """A client bound to the running event loop (asyncio clients cannot cross loops)."""
    loop = asyncio.get_running_loop()
    url = redis_url()
    per_loop = _async_clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None:
        # Blocking and bounded: a burst of clients waits for a pooled connection
        # instead of opening one each, so connections stay constant per process.
        pool = _BoundedAsyncPool.from_url(
            url,
            max_connections=int(settings.REDIS_POOL_SIZE),
            timeout=POOL_WAIT,
            socket_connect_timeout=2,
            client_name=client_name(),
        )
        client = aredis.Redis(connection_pool=pool)
        per_loop[url] = client
    return client
