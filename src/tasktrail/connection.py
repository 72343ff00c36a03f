"""Redis clients: one pool per process (and per event loop for asyncio)."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref

import redis
import redis.asyncio as aredis
from django.core.exceptions import ImproperlyConfigured

from .conf import settings

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
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


def get_redis() -> redis.Redis:
    """The process-wide client for ``TASKTRAIL['REDIS_URL']`` (fork-safe: redis-py resets
    its pool in a child process)."""
    url = redis_url()
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=2,
                    socket_timeout=5,
                    health_check_interval=30,
                    client_name=client_name(),
                )
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
        pool = aredis.BlockingConnectionPool.from_url(
            url,
            max_connections=int(settings.REDIS_POOL_SIZE),
            timeout=10,
            socket_connect_timeout=2,
            client_name=client_name(),
        )
        client = aredis.Redis(connection_pool=pool)
        per_loop[url] = client
    return client
