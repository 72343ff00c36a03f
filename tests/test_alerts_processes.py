"""Exactly once across processes: 3 workers and 2 celery beats evaluate the same rules
at the same time (tests/alerts_settings.py), and each event still sends one message
per channel. Ports 27402-27403."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tasktrail import enqueue
from tasktrail.alerts.models import AlertDelivery
from tasktrail.models import TaskRun
from tests.alerts_support import fresh_window, http_receiver, smtp_server, wait_for
from tests.conftest import ROOT, _child_env, _stop
from tests.testapp.tasks import add, boom

pytestmark = [
    pytest.mark.worker,
    pytest.mark.once,
    pytest.mark.timeout(300),
    pytest.mark.django_db(transaction=True),
]

SMTP_PORT, HTTP_PORT = 27402, 27403
QUEUE = f"{settings.TASKTRAIL['KEY_PREFIX']}-alerts"
GROUPS = [f"{QUEUE}-{n}" for n in range(5)]  # the rule groups failures by queue


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Path]]:
    """3 prefork workers (2 processes each) and 2 beats with the alert settings; yields
    the beats' log files."""
    env = {**_child_env(), "DJANGO_SETTINGS_MODULE": "tests.alerts_settings",
           "TASKTRAIL_ALERTS_SMTP_PORT": str(SMTP_PORT),
           "TASKTRAIL_ALERTS_HTTP_PORT": str(HTTP_PORT)}  # fmt: skip
    started: list[tuple[subprocess.Popen[bytes], Any]] = []
    celery = [sys.executable, "-m", "celery", "-A", "tests.celery_app"]
    try:
        for n in range(3):
            log = open(tmp_path / f"worker{n}.log", "wb")  # noqa: SIM115
            command = [*celery, "worker", "-P", "prefork", "-c", "2", "-l", "warning",
                       "-Q", ",".join([QUEUE, *GROUPS]), "-n", f"alerts{n}-{os.getpid()}@%h",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
            started.append((process, log))
        beat_logs = []
        for n in range(2):
            path = tmp_path / f"beat{n}.log"
            log = open(path, "wb")  # noqa: SIM115
            command = [*celery, "beat", "-l", "info", "-s", str(tmp_path / f"schedule{n}")]
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
            started.append((process, log))
            beat_logs.append(path)
        yield beat_logs
    finally:
        for process, _ in started:  # all at once: each takes a few seconds to stop
            if process.poll() is None:
                process.terminate()
        for process, log in started:
            _stop(process)
            log.close()


def test_three_workers_and_two_beats_send_one_message_per_event(
    processes: list[Path],
) -> None:
    fresh_window(86400)
    # Each webhook delivery takes 1.5 s: several evaluation rounds find it in flight.
    with smtp_server(SMTP_PORT) as mailbox, http_receiver(HTTP_PORT, delay=1.5) as inbox:
        enqueue(add, 1, 1, queue=QUEUE).wait(timeout=180)  # the workers are up
        first = [enqueue(boom, f"first {q}", queue=q) for q in GROUPS]
        time.sleep(1.5)  # a few evaluation rounds run between the two bursts
        second = [enqueue(boom, f"second {q}", queue=q) for q in GROUPS]
        ids = [run.id for run in first + second]
        wait_for(lambda: TaskRun.objects.filter(id__in=ids, status="FAILED").count() == 10,
                 timeout=90)  # fmt: skip
        wait_for(lambda: len(mailbox.messages) >= 5 and len(inbox.to("/hook")) >= 5)

        def rounds(path: Path) -> int:
            return path.read_text(errors="replace").count("Sending due task tasktrail.evaluate")

        before = [rounds(path) for path in processes]
        wait_for(lambda: all(rounds(p) >= b + 4 for p, b in zip(processes, before, strict=True)),
                 timeout=30)  # both beats went on evaluating for 4 more rounds each  # fmt: skip
        time.sleep(1.0)  # the last rounds' tasks run

        mails = Counter(subject.split(" in queue ")[-1] for subject in mailbox.subjects())
        hooks = Counter(json.loads(d.body)["group"] for d in inbox.to("/hook"))
        assert mails == dict.fromkeys(GROUPS, 1), mails
        assert hooks == dict.fromkeys(GROUPS, 1), hooks
    rows = AlertDelivery.objects.all()
    assert rows.count() == 10 and {r.state for r in rows} == {"sent"}
    assert {r.count for r in rows} == {2}  # both failures of each queue counted
