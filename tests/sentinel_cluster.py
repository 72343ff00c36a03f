"""A local Sentinel set-up for tests: 1 master, 1 replica, 3 sentinels (quorum 2).

Ports 27100-27199 (this work's range): the data nodes on 27100 and 27101, the
sentinels on 27110-27112. Every process is stopped by :meth:`SentinelCluster.stop`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import redis

from tests.helpers import eventually

HOST = "127.0.0.1"
DATA_PORTS = (27100, 27101)
SENTINEL_PORTS = (27110, 27111, 27112)
# Quick detection: a master silent for 1 s is down; a failover may take 5 s.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def _binary() -> str:
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def _client(port: int) -> redis.Redis:
    return redis.Redis(HOST, port, socket_connect_timeout=0.3, socket_timeout=2)


def _answers(port: int) -> bool:
    try:
        return bool(_client(port).ping())
    except redis.RedisError:
        return False


class SentinelCluster:
    def __init__(self, directory: Path, service: str | None = None) -> None:
        self.directory = directory
        self.service = service or f"tt-{uuid.uuid4().hex[:6]}"
        self.nodes: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{port}" for port in SENTINEL_PORTS)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self, *, for_failover: bool = True) -> None:
        """Start every process; unless ``for_failover`` is false, return once each
        sentinel knows the replica and its two peers (a failover needs them)."""
        master, replica = DATA_PORTS
        # The first master refuses writes once its replica is gone (promoted): a writer
        # still connected to it during a failover gets an error (the outage path), not
        # an acknowledgement of a write the new master never sees. docs/reliability.md.
        self._start_node(master, "--min-replicas-to-write", "1", "--min-replicas-max-lag", "5")
        self._start_node(replica, "--replicaof", HOST, str(master))
        eventually(lambda: self.role(replica) == "slave" and self._linked(replica), timeout=15)
        for port in SENTINEL_PORTS:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {self.directory}\n"
                f"sentinel monitor {self.service} {HOST} {master} 2\n"
                f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [_binary(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in SENTINEL_PORTS:
            eventually(lambda port=port: self._sentinel_ready(port, for_failover), timeout=20)

    def _start_node(self, port: int, *extra: str) -> None:
        self.nodes[port] = subprocess.Popen(
            [_binary(), "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        eventually(lambda: _answers(port), timeout=10)

    def _linked(self, port: int) -> bool:
        info = _client(port).info("replication")
        return info.get("master_link_status") == "up"

    def _sentinel_ready(self, port: int, for_failover: bool) -> bool:
        """The sentinel knows the master (and, for a failover, the replica and the two
        other sentinels)."""
        try:
            state = _client(port).sentinel_master(self.service)
        except redis.RedisError:
            return False
        return not for_failover or (
            int(state.get("num-slaves", 0)) >= 1 and int(state.get("num-other-sentinels", 0)) >= 2
        )

    def role(self, port: int) -> str:
        try:
            return str(_client(port).info("replication").get("role", ""))
        except redis.RedisError:
            return ""

    def master_port(self) -> int:
        """The master as a majority of the sentinels name it."""
        _, port = _client(SENTINEL_PORTS[0]).sentinel_get_master_addr_by_name(self.service)
        return int(port)

    def failover(self) -> int:
        """``SENTINEL FAILOVER``: the replica is promoted while the master is up. Returns
        the new master's port once every sentinel names it and it takes writes."""
        before = self.master_port()
        _client(SENTINEL_PORTS[0]).execute_command("SENTINEL", "FAILOVER", self.service)
        return self._moved_from(before)

    def kill_master(self) -> int:
        """SIGKILL of the master; returns the port of the replica promoted in its place."""
        before = self.master_port()
        self.nodes[before].send_signal(signal.SIGKILL)
        self.nodes[before].wait(5)
        return self._moved_from(before)

    def _moved_from(self, before: int) -> int:
        def moved() -> int | None:
            try:
                ports = {
                    int(_client(p).sentinel_get_master_addr_by_name(self.service)[1])
                    for p in SENTINEL_PORTS
                }
            except redis.RedisError:
                return None
            (port,) = ports if len(ports) == 1 else (None,)
            if port in (None, before) or self.role(port) != "master":
                return None
            return port

        return eventually(moved, timeout=30, every=0.1)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(5)
