"""Every benchmark script still starts: ``--dry-run`` parses its arguments, imports
what it needs and loads the benchmark settings, without starting any service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # the scripts start on either database: pass 1 only

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(
    path.name
    for path in (ROOT / "bench").glob("*.py")
    if path.name not in {"__init__.py", "harness.py", "settings.py", "celery_app.py",
                         "asgi.py", "urls.py", "tasks.py", "seeds_views.py"}
)  # fmt: skip


def test_every_measurement_has_a_script() -> None:
    expected = {"throughput.py", "latency.py", "fanout.py", "hot_loop.py",
                "status_endpoint.py", "memory.py", "run_all.py", "plots.py",
                "slow_readers.py"}  # fmt: skip
    assert expected <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
