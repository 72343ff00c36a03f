"""The database stops for a while and comes back: every record catches up about a
second after it is back, not when the flusher's leases end (issue 11, item 4).

A private PostgreSQL cluster (initdb on a port of its own) is stopped and started, so
the shared database is never touched; the flusher runs in a subprocess configured for
it, exactly as in a worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from scripts.services import PrivatePostgres

from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance


@pytest.fixture
def private_postgres() -> Iterator[tuple[int, list[str]]]:
    """A PostgreSQL cluster of this test's own; yields its port and the pg_ctl command
    that stops and starts it."""
    cluster = PrivatePostgres()
    cluster.start()
    try:
        yield cluster.port, cluster.pg_ctl
    finally:
        cluster.remove()


# The worker's side: runs finish while the database is down, a flusher tries to write
# them meanwhile (and leases them), the database comes back: how long until every row
# is final?
_SCENARIO = """
import os, subprocess, time, uuid
import django
django.setup()
from django.db import close_old_connections
from tasktrail import flusher
from tasktrail.models import TaskRun
from tasktrail.transitions import apply, stamp

pg_ctl = os.environ["PG_CTL"].split("\\x1f")
ids = [str(uuid.uuid4()) for _ in range(20)]
for run_id in ids:
    apply(run_id, "publish", status="READY",
          create={"id": run_id, "task": "outage", "enqueued_at": stamp(time.time())})
    apply(run_id, "start", attempt=1, status="RUNNING")
flusher.flush_all()
flusher.start()
subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)
for run_id in ids:
    apply(run_id, "finish", attempt=1, status="SUCCESSFUL", fields={"result": "1"})
time.sleep(4)  # the outage: the flusher leases and fails, round after round
subprocess.run([*pg_ctl, "start"], check=True, capture_output=True)
back = time.monotonic()
while time.monotonic() - back < 20:
    try:
        close_old_connections()
        if TaskRun.objects.filter(pk__in=ids, status="SUCCESSFUL").count() == len(ids):
            print(f"caught-up {time.monotonic() - back:.2f}", flush=True)
            break
    except Exception:
        pass
    time.sleep(0.1)
else:
    print("never caught up within 20 s", flush=True)
flusher.stop()
"""


def test_records_catch_up_within_seconds_of_a_database_outage(
    private_postgres: tuple[int, list[str]],
) -> None:
    port, pg_ctl = private_postgres
    env = dict(os.environ)
    env.update(
        TASKTRAIL_TEST_DB="postgres", PGPORT=str(port), TASKTRAIL_TEST_DB_NAME="postgres",
        PG_CTL="\x1f".join(pg_ctl), DJANGO_SETTINGS_MODULE="tests.settings",
        # Keys of its own: the session worker's flusher must not take these runs.
        TASKTRAIL_TEST_PREFIX=f"{os.environ.get('TASKTRAIL_TEST_PREFIX', 'tt')}-dbout-{uuid.uuid4().hex[:6]}",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    )  # fmt: skip
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    done = subprocess.run(
        [sys.executable, "-c", _SCENARIO], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert "caught-up" in done.stdout, done.stdout + done.stderr[-3000:]
    seconds = float(done.stdout.split("caught-up")[1].split()[0])
    assert seconds < 4.0, done.stdout  # about a second; before: the 30 s lease
