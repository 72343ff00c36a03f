"""Servers of a run's own: a Redis to kill and restart empty, a PostgreSQL cluster to
stop and start. Shared by the benchmarks and the outage tests, so the services other
people use are never touched."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(probe: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout:g} s")
        time.sleep(0.05)


class PrivateRedis:
    """A ``redis-server`` that keeps nothing on disk: killing it loses every key."""

    def __init__(
        self, directory: Path | str, port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.port = port or free_port()
        self.host = host  # another address than loopback: other network namespaces reach it
        self.directory = Path(directory)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--dir", str(self.directory),
             # Off loopback, protected mode refuses every client of a server without a
             # password; this one serves a test's private network only.
             "--protected-mode", "no" if self.host != "127.0.0.1" else "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_until(self.answers, f"redis-server on port {self.port}", 10)

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)


_PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(*command: str) -> list[str]:
    """initdb and pg_ctl refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb on a free port, trust auth, user postgres).

    ``listen``: the address it accepts TCP connections on; any other than loopback also
    trusts clients on that address's subnets (hosts in other network namespaces)."""

    def __init__(self, listen: str = "127.0.0.1", port: int | None = None) -> None:
        if not _PG_BIN:
            raise RuntimeError(
                "PostgreSQL's server binaries are not installed (/usr/lib/postgresql)"
            )
        self.home = tempfile.mkdtemp(prefix="tt-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
        self.port = port or free_port()
        self.listen = listen
        data = os.path.join(self.home, "data")
        subprocess.run(
            _as_postgres(f"{_PG_BIN[-1]}/initdb", "-D", data, "-A", "trust", "-U", "postgres"),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        if listen != "127.0.0.1":  # initdb's pg_hba.conf admits loopback clients only
            with open(os.path.join(data, "pg_hba.conf"), "a") as hba:
                hba.write("host all all samenet trust\n")
        self.pg_ctl = _as_postgres(
            f"{_PG_BIN[-1]}/pg_ctl", "-D", data, "-w", "-l", os.path.join(self.home, "log"),
            "-o", f"-p {self.port} -k {self.home} -c listen_addresses={listen}",
        )  # fmt: skip

    def start(self) -> None:
        subprocess.run([*self.pg_ctl, "start"], check=True, capture_output=True, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run([*self.pg_ctl, "-m", mode, "stop"], check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run([*self.pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.home, ignore_errors=True)
