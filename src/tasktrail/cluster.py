"""Redis Cluster for tasktrail's own connections: the URL, the clients, and the shards.

``TASKTRAIL['REDIS_URL']`` names a cluster as::

    redis+cluster://[[username]:password@]host[:port][,host[:port]...][/0]
    rediss+cluster://...     (TLS)

The hosts are startup nodes (default port 6379): any one that answers tells the client
where every slot is. A cluster has one database, so the path is empty or ``/0``.

A Lua script may only touch keys of one slot. Every transition of a run touches its
record, its stream, and structures shared by many runs (the flusher's dirty set, the
waiting set, the workers' active sets, the cancellations, the firehose, counters). So
in cluster mode every key of a run, and one copy of each shared structure, live under
a *shard* base ``<prefix>:{<n>}``: the braces are Redis's hash tag, so a run's keys and
its shard's structures share one slot, and a transition stays one atomic script.
``TASKTRAIL['CLUSTER_SHARDS']`` shards spread the load over the masters; readers of a
shared structure (the flusher, the sweep, lost-run detection, metrics) go through
every shard. Subject streams belong to no run: the transition returns their events
and the caller appends them in a second step (see ``transitions.py``).

On a single node nothing of this applies: the keys keep their names.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as async_cluster
from django.core.exceptions import ImproperlyConfigured
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379
EXAMPLE = "redis+cluster://:password@10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"
# Which node to subscribe through: a generator of our own (the global one is the
# application's).
_pick = random.Random()


class InvalidClusterURL(ImproperlyConfigured):
    """``REDIS_URL`` says cluster but cannot be read."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"TASKTRAIL['REDIS_URL'] {redact(url)!r} is not a valid Redis Cluster URL: "
            f"{problem}. Write it as redis+cluster://[[user]:password@]host[:port]"
            f"[,host[:port]...][/0], e.g. {EXAMPLE!r}."
        )
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """What a ``redis+cluster://`` URL says."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None


_SCHEME_PREFIXES = tuple(f"{s}://" for s in SCHEMES)


def is_cluster_url(url: object) -> bool:
    return isinstance(url, str) and url.lower().startswith(_SCHEME_PREFIXES)


def redact(url: str) -> str:
    """The URL without its credentials (for logs and errors)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def parse_cluster_url(url: str) -> ClusterAddress:
    if not is_cluster_url(url):
        raise InvalidClusterURL(url, f"the scheme is not one of {', '.join(SCHEMES)}")
    scheme, _, rest = url.partition("://")
    credentials, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    if path.split("?", 1)[0] not in ("", "0"):
        raise InvalidClusterURL(url, "a cluster has only database 0 (write /0 or nothing)")
    nodes = []
    for host in hosts.split(","):
        if not host:
            raise InvalidClusterURL(url, "a node's host is empty" if hosts else "it names no node")
        if host.startswith("["):
            name, _, port_text = host[1:].partition("]")
            port_text = port_text.removeprefix(":")
        elif host.count(":") > 1:
            raise InvalidClusterURL(url, f"write an IPv6 address in brackets: [{host}]")
        else:
            name, _, port_text = host.partition(":")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise InvalidClusterURL(url, f"the port of node {name!r} is {port_text!r}")
        nodes.append((name, int(port_text) if port_text else DEFAULT_PORT))
    username, _, password = credentials.partition(":")
    return ClusterAddress(
        nodes=tuple(nodes),
        tls=scheme.lower() == "rediss+cluster",
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def shard_of(run_id: str, shards: int) -> int:
    """Which shard a run's keys live in (stable across processes and versions)."""
    return zlib.crc32(run_id.encode()) % max(1, shards)


def _options(address: ClusterAddress, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": address.username,
        "password": address.password,
        "ssl": address.tls,
        **options,
    }


def unreachable(exc: RedisClusterException) -> redis.RedisError | None:
    """redis-py reports a cluster it cannot reach (no node answers, a slot no master
    serves) as ``RedisClusterException``, which is not a ``redis.RedisError``, the error
    every outage path of tasktrail handles: that error, for those. A key-slot mistake
    (ours) is None: it stays what it is."""
    text = str(exc)
    if "same key slot" in text or "CROSSSLOT" in text:
        return None
    return redis.ConnectionError(f"the Redis Cluster cannot be reached: {text}")


class _Cluster(RedisCluster):
    """RedisCluster whose unreachable cluster is a ``redis.ConnectionError``."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise (unreachable(exc) or exc) from exc

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)  # type: ignore[no-untyped-call]
        run = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            try:
                return run(*a, **k)
            except RedisClusterException as exc:
                raise (unreachable(exc) or exc) from exc

        pipe.execute = execute
        return pipe


def client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A cluster client. Typed as ``redis.Redis``: the commands tasktrail uses have the
    same signatures on both. Raises ``redis.ConnectionError`` when no node answers."""
    address = parse_cluster_url(url)
    options = {k: v for k, v in options.items() if k not in ("health_check_interval",)}
    try:
        found: Any = _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],  # type: ignore[no-untyped-call]
            **_options(address, options),
        )
    except RedisClusterException as exc:
        raise (unreachable(exc) or exc) from exc
    return found  # type: ignore[no-any-return]


def async_client(url: str, options: dict[str, Any]) -> aredis.Redis:
    address = parse_cluster_url(url)
    options = {k: v for k, v in options.items() if k not in ("timeout",)}
    found: Any = async_cluster.RedisCluster(
        startup_nodes=[async_cluster.ClusterNode(host, port) for host, port in address.nodes],
        **_options(address, options),
    )
    return found  # type: ignore[no-any-return]


def node_addresses(found: Any, url: str) -> list[tuple[str, int]]:
    """Every node the client knows (after a failover too), else the URL's startup nodes."""
    try:
        nodes = [(n.host, int(n.port)) for n in found.get_nodes()]
    except Exception:  # an async client not initialised yet, say
        nodes = []
    return nodes or list(parse_cluster_url(url).nodes)


def pubsub_node(url: str, known: list[tuple[str, int]], options: dict[str, Any]) -> redis.Redis:
    """A plain client of one node that answers, for classic pub/sub: a cluster delivers
    every PUBLISH to subscribers on every node, so any node will do."""
    address = parse_cluster_url(url)
    last: Exception | None = None
    for host, port in _pick.sample(known, len(known)):
        node = redis.Redis(host=host, port=port, **_options(address, options))
        try:
            node.ping()
            return node
        except redis.RedisError as exc:
            node.close()
            last = exc
    raise redis.ConnectionError(f"no node of the cluster answers: {last}")


async def async_pubsub_node(
    url: str, known: list[tuple[str, int]], options: dict[str, Any]
) -> aredis.Redis:
    address = parse_cluster_url(url)
    last: Exception | None = None
    for host, port in _pick.sample(known, len(known)):
        node = aredis.Redis(host=host, port=port, **_options(address, options))
        try:
            async with asyncio.timeout(2):  # a frozen node accepts TCP and never answers
                await node.ping()
            return node
        except (redis.RedisError, TimeoutError) as exc:
            await node.aclose()
            last = exc
    raise redis.ConnectionError(f"no node of the cluster answers: {last}")


def check_url(url: str) -> str | None:
    """What is wrong with a cluster URL, or None."""
    try:
        parse_cluster_url(url)
    except InvalidClusterURL as exc:
        return exc.problem
    return None
