"""Hosts on a network of their own: one Linux network namespace (and hostname) per
host, each joined to a bridge in the root namespace by a veth pair (root only).

The bridge holds ``GATEWAY`` (10.77.0.1), where the test's private Redis and PostgreSQL
listen; host ``n`` gets 10.77.0.(10 + n). ``Network.cut`` takes a host's link down:
its processes keep running but reach nothing, as when a machine drops off the network.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "tt-mh-"  # every namespace and link this module makes starts with it
BRIDGE = f"{PREFIX}br"
GATEWAY = "10.77.0.1"


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> None:
    command = ["ip", *(("netns", "exec", namespace, "ip") if namespace else ()), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


@dataclass
class Host:
    name: str  # the namespace: tt-mh-<short name>
    address: str

    @property
    def inner_link(self) -> str:
        return f"{self.name}-n"

    @property
    def outer_link(self) -> str:
        return f"{self.name}-r"

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` on this host: its network namespace and a hostname of its own (a UTS
        namespace). tasktrail tells machines apart by hostname, boot and pid namespace;
        with the machine's hostname, a worker cut off from the network would count as a
        live process on the same machine as its peers, so lost only after
        ``LAGGING_LIMIT`` times ``LOST_AFTER``."""
        rename = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.name, "unshare", "--uts", "sh", "-c", rename,
                self.name, *argv]  # fmt: skip


@dataclass
class Network:
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_host(self, short: str) -> Host:
        host = Host(f"{PREFIX}{short}", f"10.77.0.{11 + len(self.hosts)}")
        _ip("netns", "add", host.name)
        self.hosts[short] = host
        _ip("link", "add", host.outer_link, "type", "veth", "peer", "name", host.inner_link,
            "netns", host.name)  # fmt: skip
        _ip("link", "set", host.outer_link, "master", BRIDGE, "up")
        _ip("addr", "add", f"{host.address}/24", "dev", host.inner_link, namespace=host.name)
        _ip("link", "set", host.inner_link, "up", namespace=host.name)
        _ip("link", "set", "lo", "up", namespace=host.name)
        return host

    def cut(self, short: str) -> None:
        host = self.hosts[short]
        _ip("link", "set", host.inner_link, "down", namespace=host.name)

    def start(
        self, short: str, argv: list[str], env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """``argv`` inside the host's namespace, in a process group of its own."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.hosts[short].command(argv), env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
        self.processes.append(process)
        return process

    def stop_processes(self) -> None:
        """SIGTERM, then SIGKILL to each group: a cut-off worker never finishes a warm
        shutdown (its tasks sleep, its broker is out of reach)."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def remove_leftovers() -> None:
    """Namespaces and links of an earlier run that died before its clean-up."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            _ip("netns", "delete", name, check=False)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            _ip("link", "delete", name, check=False)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    """A bridge at ``GATEWAY``; namespaces, links and processes are removed on exit,
    whatever happened."""
    remove_leftovers()
    net = Network()
    try:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        yield net
    finally:
        net.stop_processes()
        for host in net.hosts.values():
            # The kernel frees a deleted namespace's links later; the pair goes now.
            _ip("link", "delete", host.outer_link, check=False)
            _ip("netns", "delete", host.name, check=False)
        _ip("link", "delete", BRIDGE, check=False)
