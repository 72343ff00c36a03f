"""A local Redis Cluster for tests and benchmarks: 3 masters and 3 replicas.

Ports 27700-27705 by default (this work's range; a benchmark passes its own). Every
node is a ``redis-server`` in cluster mode with nothing on disk; :meth:`start` makes the
cluster with ``redis-cli --cluster create`` and returns once every slot is served and
every replica is linked. Every process is stopped by :meth:`stop`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

HOST = "127.0.0.1"
PORTS = (27700, 27701, 27702, 27703, 27704, 27705)
# A master silent for this long is failed over by its replica.
NODE_TIMEOUT_MS = 2000


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


def _client(port: int) -> redis.Redis:
    return redis.Redis(HOST, port, socket_connect_timeout=0.3, socket_timeout=2)


def _wait(probe: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the local Redis Cluster: {what} within {timeout:g} s")


class RedisCluster:
    def __init__(self, directory: Path, ports: tuple[int, ...] = PORTS) -> None:
        self.directory = directory
        self.ports = ports
        self.nodes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """tasktrail's URL for it: every node, so a client finds one that answers."""
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        create = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create",
             *(f"{HOST}:{port}" for port in self.ports), "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if create.returncode:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        _wait(self.healthy, 60, "every slot served and every replica linked")

    def start_node(self, port: int) -> None:
        """Start (or restart, empty) the node on ``port``; it rejoins with its nodes file."""
        self.nodes[port] = subprocess.Popen(
            [_binary("redis-server"), "--port", str(port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # The bus port defaults to port + 10000 (377xx), inside the kernel's
             # ephemeral range: a client socket holding it kept a node from starting.
             "--cluster-port", str(port - 10000)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: _client(port).ping(), 10, f"node {port} answers")

    def healthy(self) -> bool:
        """Every live node says the cluster is ok; 3 masters each with a linked replica."""
        live = [p for p, process in self.nodes.items() if process.poll() is None]
        for port in live:
            if _client(port).cluster("info")["cluster_state"] != "ok":
                return False
        masters = self.masters()
        if len(masters) != 3:
            return False
        for port in live:
            info = _client(port).info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def masters(self) -> list[int]:
        """Ports of the masters that serve slots, as a live node sees them."""
        for port, process in self.nodes.items():
            if process.poll() is not None:
                continue
            try:
                nodes = _client(port).cluster("nodes")
            except redis.RedisError:
                continue
            return sorted(
                int(address.split(":")[1].split("@")[0])
                for address, node in nodes.items()
                if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"]
            )
        return []

    def master_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot."""
        for port in self.masters():
            try:
                slot = int(_client(port).cluster("keyslot", key))
                nodes = _client(port).cluster("slots")
            except redis.RedisError:
                continue
            for start, end, master, *_ in nodes:
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(f"no master serves {key!r}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (a master: its replica takes over after the node timeout)."""
        self.nodes[port].send_signal(signal.SIGKILL)
        self.nodes[port].wait(5)

    def failed_over(self, old_master: int, timeout: float = 30) -> int:
        """Wait until a replica serves what ``old_master`` served; its port."""
        before = set(self.masters()) - {old_master}

        def promoted() -> bool:
            now = set(self.masters())
            return old_master not in now and len(now) == 3

        _wait(promoted, timeout, f"a replica of {old_master} promoted")
        (port,) = set(self.masters()) - before
        return port

    def stop(self) -> None:
        for process in self.nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(5)
