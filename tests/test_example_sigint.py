"""Ctrl-C (SIGINT) to command 1 stops every process it started: no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigint_leaves_no_process_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["REDIS_URL"] = f"redis://127.0.0.1:{_free_port()}/0"  # nothing there: private Valkey
    log = tmp_path / "runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "example", "--port", str(_free_port()),
             "--data-dir", str(tmp_path / "data")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while b"Everything started" not in log.read_bytes():
            assert runner.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(3)  # the demo's runs are under way: worker pool children are busy
        started = descendants(runner.pid)
        names = {Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ") for p in started}
        joined = b"\n".join(names)
        for part in (b"valkey-server", b"uvicorn", b"worker", b"beat"):
            assert part in joined, joined.decode(errors="replace")
        assert len(started) >= 8  # valkey (2), web, worker and 4 pool processes, beat

        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 5
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(p for p in started if alive(p))
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
