"""The lost-worker and skew trials (``scripts/kill_trial.py``, ``scripts/skew_trial.py``)
in a small configuration, so the scripts keep working and keep passing.

Each script starts and cleans up its own workers, key prefix and SQLite file, so these
tests only run them and read their verdict. The full runs (108+ kills per broker, 200
skewed runs) take minutes; see the scripts' docstrings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(180), pytest.mark.once]

ROOT = Path(__file__).resolve().parents[2]
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def run_script(name: str, *args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """Run a trial; past ``timeout``, SIGTERM it so that it stops its workers itself."""
    command = [sys.executable, str(ROOT / "scripts" / name), *args]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
            pytest.fail(f"{name} took over {timeout:g} s\n{out[-6000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def verdict(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


def test_kill_trial_one_kill_per_case_on_redis() -> None:
    """16 SIGKILLed runs: every case once (pool child and whole node; early ack,
    acks_late, reject_on_worker_lost, retry_on_worker_lost; alone and as chain heads)."""
    done = run_script("kill_trial.py", "--broker", "redis", "--kills", "16", "--no-control")
    assert done.returncode == 0, verdict(done)
    assert "RUNNING left: 0; mismatches: 0" in done.stdout, verdict(done)


def test_skew_trial_20_runs() -> None:
    """Two workers 5 s ahead and 5 s behind retry the same 20 runs; rows equal Celery."""
    if not FAKETIME.exists():
        pytest.fail(f"{FAKETIME} is missing; install it: apt-get install -y libfaketime")
    done = run_script("skew_trial.py", "--runs", "20")
    assert done.returncode == 0, verdict(done)
    assert "rows equal to Celery: 20" in done.stdout, verdict(done)
