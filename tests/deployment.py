"""Running deploy/'s templates as docs/deployment.md says, without root or systemd.

``fill`` replaces a template's ``@NAME@`` placeholders, ``unit_command`` turns a unit's
``ExecStart`` into an argv (resolving the specifiers the units use), ``Stack`` starts
and stops the processes as systemd would, and ``nginx_main_conf`` stands in for
Debian's ``/etc/nginx/nginx.conf`` around the site, with every path in a temporary
directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def fill(template: str, values: dict[str, str]) -> str:
    """A deploy/ template with every ``@NAME@`` replaced (a missing value is a KeyError)."""
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def unit_command(unit: Path, values: dict[str, str], instance: str = "") -> list[str]:
    """The argv of a systemd unit's ``ExecStart``, with the specifiers it uses resolved
    as systemd does (``%i``: the instance, ``%%``: a literal ``%``)."""
    lines = fill(unit.read_text(), values).splitlines()
    [command] = [line.split("=", 1)[1] for line in lines if line.startswith("ExecStart=")]
    parts = command.split("%%")
    return shlex.split("%".join(part.replace("%i", instance) for part in parts))


def with_upstreams(site: str, instances: list[str]) -> str:
    """The site with its ``server @UPSTREAM@ ...;`` line repeated for each instance, as
    the docs say to do."""
    [line] = [line for line in site.splitlines() if "server @UPSTREAM@" in line]
    return site.replace(line, "\n".join(line.replace("@UPSTREAM@", i) for i in instances))


def environment_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of a systemd ``EnvironmentFile`` (comments and blanks skipped)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass
class Stack:
    base_url: str
    tmp: Path
    key_prefix: str
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes.append((name, process))
        self.commands[name] = (argv, env)
        return process

    def restart(self, name: str, ready: Callable[[], bool]) -> None:
        """What ``systemctl restart`` does to a unit: SIGTERM, wait, start it again."""
        old = dict(self.processes)[name]
        old.send_signal(signal.SIGTERM)
        old.wait(20)
        self.processes.remove((name, old))
        self.start(name, *self.commands[name])
        self.wait(name, ready)

    def wait(self, name: str, ready: Callable[[], bool], timeout: float = 60) -> None:
        process = dict(self.processes)[name]
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
            assert time.monotonic() < deadline, f"{name} not ready:\n{self.log(name)[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to each main process, as systemd's KillMode=mixed does, newest first;
        then SIGKILL to whatever is left of its group."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def nginx_main_conf(tmp: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf provides around a site, with every path in
    ``tmp`` (no root-owned directory touched) and a log that names each request's
    protocol and connection."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return f"""{user}
daemon off;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "nginx-error.log"} warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
{temp}
    uwsgi_temp_path {tmp / "uwsgi"};
    scgi_temp_path {tmp / "scgi"};
    log_format streams '$connection $server_protocol $status $request_uri';
    access_log {tmp / "nginx-access.log"} streams;
    include {site};
}}
"""
