"""A worker's Redis pool is not the web process's bounded one (the worker_init receiver
calls connection.in_worker()): a threads worker whose concurrency passes REDIS_POOL_SIZE
must not take a full pool for a Redis outage."""

from __future__ import annotations

import redis

from tasktrail import connection


def test_in_a_worker_the_pool_is_not_bounded() -> None:
    try:
        assert isinstance(connection.get_redis().connection_pool, connection._BoundedPool)
        connection.in_worker()
        pool = connection.get_redis().connection_pool
        assert not isinstance(pool, redis.BlockingConnectionPool)
    finally:
        connection._bounded = True
        connection._clients.clear()
