"""Redis Sentinel for tasktrail's own connections: the URL and the master-following pools.

``TASKTRAIL['REDIS_URL']`` names a Sentinel-managed master as::

    redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/service[/db]
        [?sentinel_password=...]

The hosts are the *sentinels* (default port 26379); the credentials before ``@`` are
the master's; ``sentinel_password`` is the sentinels' own when they require one.
Every client is then a ``master_for(service)`` client of redis-py: a new connection
asks the sentinels where the master is. The pools here also ask about once a second
while in use, so a process stops talking to a demoted master soon after a failover
instead of only when that master closes its connections.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
# How often a pool in use asks the sentinels where the master is.
MASTER_CHECK = 1.0
EXAMPLE = "redis+sentinel://:password@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"


class InvalidSentinelURL(ImproperlyConfigured):
    """``REDIS_URL`` says Sentinel but cannot be read."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"TASKTRAIL['REDIS_URL'] {redact(url)!r} is not a valid Sentinel URL: {problem}. "
            f"Write it as redis+sentinel://[[user]:password@]host[:port][,host[:port]...]"
            f"/service_name[/db], e.g. {EXAMPLE!r}."
        )
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """What a ``redis+sentinel://`` URL says."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: object) -> bool:
    return isinstance(url, str) and url.lower().startswith(f"{SCHEME}://")


def redact(url: str) -> str:
    """The URL without its credentials (for messages and the health check)."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rsplit('@', 1)[-1]}{slash}{path.split('?', 1)[0]}"


def _port(url: str, host: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidSentinelURL(url, f"the port of sentinel {host!r} is {text!r}")
    return int(text)


def _sentinels(url: str, hosts: str) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise InvalidSentinelURL(url, "a sentinel host is empty (a stray comma?)")
        if item.startswith("["):  # [IPv6]:port
            host, _, tail = item[1:].partition("]")
            port = _port(url, host, tail[1:]) if tail.startswith(":") else DEFAULT_PORT
            if tail and not tail.startswith(":"):
                raise InvalidSentinelURL(url, f"cannot read the sentinel address {item!r}")
        elif item.count(":") == 1:
            host, _, text = item.partition(":")
            port = _port(url, host, text)
        elif ":" in item:
            raise InvalidSentinelURL(url, f"write the IPv6 address {item!r} in brackets")
        else:
            host, port = item, DEFAULT_PORT
        if not host:
            raise InvalidSentinelURL(url, f"the sentinel address {item!r} has no host")
        found.append((host, port))
    return tuple(found)


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Read a ``redis+sentinel://`` URL; :class:`InvalidSentinelURL` says what is wrong."""
    if not is_sentinel_url(url):
        raise InvalidSentinelURL(url, f"it does not start with {SCHEME}://")
    # Not urlsplit: it refuses a list of hosts with a bracketed IPv6 address in it.
    rest, _, query_text = url.split("://", 1)[1].partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not hosts:
        raise InvalidSentinelURL(url, "it names no sentinel host")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis:// reads a lone word as the password too
            username, password = None, unquote(user) or None
    segments = [unquote(s) for s in path.split("/")] if path else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or not segments[0]:
        raise InvalidSentinelURL(url, "the master's service name is missing (…/mymaster)")
    if len(segments) > 2:
        raise InvalidSentinelURL(url, "the path has more than /service_name/db")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise InvalidSentinelURL(url, f"the database {segments[1]!r} is not a number")
        db = int(segments[1])
    query = parse_qs(query_text, keep_blank_values=True)
    unknown = sorted(set(query) - {"sentinel_password"})
    if unknown:
        raise InvalidSentinelURL(
            url, f"unknown option {', '.join(unknown)} (only sentinel_password is read)"
        )
    sentinel_password = query.get("sentinel_password", [None])[-1] or None
    return SentinelAddress(
        sentinels=_sentinels(url, hosts),
        service=segments[0],
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
    )


def _sentinel_options(address: SentinelAddress) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    if address.sentinel_password:
        options["password"] = address.sentinel_password
    return options


def _master_options(address: SentinelAddress) -> dict[str, Any]:
    return {"db": address.db, "username": address.username, "password": address.password}


class FollowingPool(SentinelConnectionPool):
    """A master pool that checks the sentinels' answer while in use (at most once per
    :data:`MASTER_CHECK`): after a failover its idle connections to the old master are
    closed, and busy ones on their release (redis-py's ``owns_connection``)."""

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK
            # No master right now: the command's own connect reports it.
            with contextlib.suppress(MasterNotFoundError):
                self.get_master_address()  # type: ignore[no-untyped-call]
        return super().get_connection(*args, **kwargs)


class AsyncFollowingPool(AsyncSentinelPool):
    _next_check = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK
            with contextlib.suppress(AsyncMasterNotFoundError):
                await self.get_master_address()  # type: ignore[no-untyped-call]
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]


def master_pool(address: SentinelAddress, pool_class: type[Any], **options: Any) -> Any:
    """A connection pool of ``pool_class`` (a :class:`FollowingPool`) to the master."""
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels), sentinel_kwargs=_sentinel_options(address)
    )
    return pool_class(address.service, manager, **_master_options(address), **options)


def async_master_pool(address: SentinelAddress, pool_class: type[Any], **options: Any) -> Any:
    manager = AsyncSentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels), sentinel_kwargs=_sentinel_options(address)
    )
    return pool_class(address.service, manager, **_master_options(address), **options)


def master_moved(pubsub: Any) -> bool:
    """Whether ``pubsub`` (of a Sentinel pool) is connected to a server that is no longer
    the master: a subscriber there hears nothing the new master publishes, and a demoted
    master the sentinels cannot reach keeps its connections open."""
    pool, connection = pubsub.connection_pool, pubsub.connection
    if not isinstance(pool, SentinelConnectionPool) or connection is None:
        return False
    try:
        host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    except MasterNotFoundError:
        return False  # mid-failover: a later check sees the new master
    return (connection.host, int(connection.port)) != (host, int(port))


async def amaster_moved(pubsub: Any) -> bool:
    """:func:`master_moved` for an asyncio ``pubsub``."""
    pool, connection = pubsub.connection_pool, pubsub.connection
    if not isinstance(pool, AsyncSentinelPool) or connection is None:
        return False
    try:
        host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
    except AsyncMasterNotFoundError:
        return False
    return (connection.host, int(connection.port)) != (host, int(port))
