"""Celery's own integration tests with tasktrail connected, the ``--subset`` selection
of ``scripts/celery_integration.py``: the same tests pass as without tasktrail, and every
run tasktrail recorded agrees with the state Celery's result backend stores for it.

A trial (about 80 s): the default run leaves it out, ``uv run pytest -m trial`` runs it.
The full run (``uv run python scripts/celery_integration.py``, about 40 minutes) is
described in docs/reliability.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.acceptance
@pytest.mark.trial
@pytest.mark.once
@pytest.mark.skipif(
    os.environ.get("TASKTRAIL_TEST_DB") == "postgres",
    reason="the script keeps its own SQLite database: the SQLite pass of the suite runs it",
)
@pytest.mark.timeout(360)
def test_celery_integration_subset() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "celery_integration.py"), "--subset"],
        cwd=ROOT, capture_output=True, text=True, timeout=340,
    )  # fmt: skip
    print(done.stdout[-8000:])  # the figures, shown with -rP or on failure
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
