"""A worker of one queue, for the queue-control tests (pause/resume reach it or not)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import tests.celery_app
from tasktrail import get_run
from tests.conftest import ROOT, _child_env, _stop

APP = tests.celery_app.app


@contextlib.contextmanager
def running_worker(queue: str, node: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A solo worker consuming only ``queue``, from when it answers a ping; stopped on exit."""
    with log.open("wb") as output, _started(queue, node, output) as process:
        yield process


@contextlib.contextmanager
def _started(queue: str, node: str, output: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", "solo",
            "-Q", queue, "-n", node, "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=ROOT, env=_child_env(), stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not APP.control.ping(destination=[node], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {node} did not start; see {output.name}")
        yield process
    finally:
        _stop(process)


def still_waiting(run_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if get_run(run_id).status != "READY":
            return False
        time.sleep(0.2)
    return True
