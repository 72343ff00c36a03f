"""Redis clients: one pool per process (and per event loop for asyncio).

``REDIS_URL`` is a plain Redis URL, a ``redis+sentinel://`` one (see
:mod:`tasktrail.sentinel`) or a ``redis+cluster://`` one (see :mod:`tasktrail.cluster`);
all get the same bounds and client names."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aredis
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisClusterException

from . import cluster, sentinel
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


def redis_location() -> str:
    """Where tasktrail's Redis is, without credentials (for health checks and logs)."""
    url = redis_url()
    if cluster.is_cluster_url(url):
        return cluster.redact(url)
    if not sentinel.is_sentinel_url(url):
        return url.rsplit("@", 1)[-1]
    master = getattr(get_redis().connection_pool, "master_address", None)
    where = f" (master {master[0]}:{master[1]})" if master else ""
    return f"{sentinel.redact(url)}{where}"


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


def _gated_sync(client: redis.Redis, size: int, wait: float) -> redis.Redis:
    """The sync cluster client of a web process, bounded like the single node's blocking
    pool: redis-py's cluster nodes raise at once when their connections are all busy,
    which a burst of sync views would take for an outage. Commands and pipelines take
    turns; a pipeline uses at most one connection per node."""
    gate = threading.BoundedSemaphore(size)

    def gated(call: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            if not gate.acquire(timeout=wait):
                raise _exhausted(size, wait)
            try:
                return call(*args, **kwargs)
            finally:
                gate.release()

        return run

    pipeline = client.pipeline

    def gated_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe: Any = pipeline(*args, **kwargs)
        pipe.execute = gated(pipe.execute)
        return pipe

    client.execute_command = gated(client.execute_command)  # type: ignore[method-assign]
    client.pipeline = gated_pipeline  # type: ignore[method-assign]
    return client


def _gated(client: aredis.Redis, options: dict[str, Any]) -> aredis.Redis:
    """A cluster client whose commands wait for one of ``max_connections`` turns, like
    the blocking pool of a single Redis: redis-py's asyncio cluster client raises at
    once when a node's connections are all busy, and a burst of stream openers would
    take that for an outage (a 503 each)."""
    size, wait = int(options["max_connections"]), float(options["timeout"])
    gate = asyncio.Semaphore(size)
    command = client.execute_command

    async def execute_command(*args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(wait):
                await gate.acquire()
        except TimeoutError:
            raise _exhausted(size, wait) from None
        try:
            return await command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise (cluster.unreachable(exc) or exc) from exc
        finally:
            gate.release()

    client.execute_command = execute_command  # type: ignore[method-assign]
    return client


class _BoundedSentinelPool(sentinel.FollowingPool, _BoundedPool):
    """The bounded pool, to whichever server the sentinels call the master."""


class _UnboundedSentinelPool(sentinel.FollowingPool):
    pass


class _BoundedAsyncSentinelPool(sentinel.AsyncFollowingPool, _BoundedAsyncPool):
    pass


def _sync_pool(url: str, options: dict[str, Any]) -> redis.ConnectionPool:
    if sentinel.is_sentinel_url(url):
        address = sentinel.parse_sentinel_url(url)
        if _bounded:
            return sentinel.master_pool(  # type: ignore[no-any-return]
                address,
                _BoundedSentinelPool,
                max_connections=int(settings.REDIS_POOL_SIZE),
                timeout=POOL_WAIT,
                **options,
            )
        return sentinel.master_pool(address, _UnboundedSentinelPool, **options)  # type: ignore[no-any-return]
    if _bounded:
        return _BoundedPool.from_url(
            url, max_connections=int(settings.REDIS_POOL_SIZE), timeout=POOL_WAIT, **options
        )
    return redis.ConnectionPool.from_url(url, **options)


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
                if cluster.is_cluster_url(url):
                    if _bounded:
                        size = int(settings.REDIS_POOL_SIZE)
                        options["max_connections"] = size
                        client = _gated_sync(cluster.client(url, options), size, POOL_WAIT)
                    else:
                        client = cluster.client(url, options)
                else:
                    client = redis.Redis(connection_pool=_sync_pool(url, options))
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
        options: dict[str, Any] = {
            "max_connections": int(settings.REDIS_POOL_SIZE),
            "timeout": POOL_WAIT,
            "socket_connect_timeout": 2,
            "client_name": client_name(),
        }
        pool: aredis.ConnectionPool
        if cluster.is_cluster_url(url):
            client = per_loop[url] = _gated(cluster.async_client(url, options), options)
            return client
        if sentinel.is_sentinel_url(url):
            address = sentinel.parse_sentinel_url(url)
            pool = sentinel.async_master_pool(address, _BoundedAsyncSentinelPool, **options)
        else:
            pool = _BoundedAsyncPool.from_url(url, **options)
        client = aredis.Redis(connection_pool=pool)
        per_loop[url] = client
    return client


def get_pubsub() -> Any:
    """A pub/sub object for this process's Redis. On a cluster, through one node that
    answers (every node delivers every message); a new call after a failure picks
    again among the nodes the cluster knows now."""
    url = redis_url()
    if not cluster.is_cluster_url(url):
        return get_redis().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    known = cluster.node_addresses(get_redis(), url)
    options = {"socket_connect_timeout": 2, "socket_timeout": 5, "client_name": client_name()}
    return cluster.pubsub_node(url, known, options).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]


async def get_async_pubsub() -> Any:
    """:func:`get_pubsub` for the running event loop."""
    url = redis_url()
    if not cluster.is_cluster_url(url):
        return get_async_redis().pubsub()
    known = cluster.node_addresses(get_async_redis(), url)
    options = {"socket_connect_timeout": 2, "client_name": client_name()}
    node = await cluster.async_pubsub_node(url, known, options)
    return node.pubsub()
