"""progress() and feed() inside a run, without a worker: coalescing and limits."""

from __future__ import annotations

import time
import uuid

import pytest
from django.test import override_settings

from tasktrail import Status, feed, get_run, progress, reporting
from tasktrail.exceptions import RunCancelled
from tasktrail.transitions import ANY_ATTEMPT, apply
from tests.helpers import eventually, stored_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def running() -> str:
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY, create={"id": run_id, "task": "t"})
    tracker = reporting.begin(run_id, 1)
    tracker.record("start", status=Status.RUNNING)
    yield run_id
    reporting.end()


def test_outside_a_task_progress_and_feed_do_nothing() -> None:
    progress(1, 2)
    feed("nobody hears this")


def test_bursts_are_coalesced_and_the_last_value_always_arrives(running: str) -> None:
    for i in range(1, 10_001):
        progress(i, 10_000, f"item {i}")
    sent = [d for _, kind, d in stored_events(running) if kind == "progress"]
    assert sent[0]["current"] == 1  # the first call goes out at once
    assert len(sent) < 1_000
    run = eventually(lambda: (r := get_run(running)).progress.current == 10_000 and r)
    assert run.progress.message == "item 10000"
    assert run.progress.percent == 100.0


def test_every_feed_line_is_an_event_in_order(running: str) -> None:
    for i in range(50):
        feed(f"line {i}", "warning" if i % 2 else "info")
    lines = [d["message"] for _, kind, d in stored_events(running) if kind == "feed"]
    assert lines == [f"line {i}" for i in range(50)]


def test_feed_level_is_checked_and_long_lines_are_truncated_visibly(running: str) -> None:
    with pytest.raises(ValueError, match="feed level must be one of"):
        feed("x", "fatal")  # type: ignore[arg-type]
    with override_settings(TASKTRAIL={**_settings(), "MAX_FEED_BYTES": 10}):
        feed("a" * 100)
    (line,) = [d["message"] for _, kind, d in stored_events(running) if kind == "feed"]
    assert line == "a" * 10 + " [truncated]"


def _settings() -> dict[str, object]:
    from django.conf import settings

    return dict(settings.TASKTRAIL)


def test_a_cancel_request_raises_at_the_next_call(running: str) -> None:
    progress(1, 10)
    apply(
        running,
        "cancel",
        attempt=ANY_ATTEMPT,
        status=Status.CANCELLED,
        fields={"cancel_requested_at": str(time.time())},
    )
    with pytest.raises(RunCancelled):
        feed("still working?")
    with pytest.raises(RunCancelled):
        progress(2, 10)
