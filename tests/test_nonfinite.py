"""NaN and Infinity (numbers Python writes and JSON has no word for): refused where a
caller can fix them, stored as null where a task reports them (issue 11, item 1)."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import pytest

from tasktrail import Status, enqueue, progress
from tasktrail.flusher import flush_all
from tasktrail.models import TaskRun
from tasktrail.outcomes import json_result
from tasktrail.transitions import apply, dumps, stamp
from tests.helpers import eventually, stored_events
from tests.testapp.tasks import add, echo


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_enqueue_refuses_a_number_json_cannot_carry(number: float) -> None:
    with pytest.raises(ValueError, match=r"args\[0\]|argument 'x'") as refused:
        enqueue(add, number, 1)
    assert "Send None, or the number as a string" in str(refused.value)
    with pytest.raises(ValueError, match="argument 'value'"):
        enqueue(echo, {"deep": [1, number]})


def test_reported_data_keeps_json_numbers_and_nulls_the_others() -> None:
    assert dumps({"current": math.nan, "items": [1.5, math.inf], "n": 2}) == (
        '{"current":null,"items":[1.5,null],"n":2}'
    )
    assert json_result([math.nan, 1]) == "[null,1]"


@pytest.mark.django_db
@pytest.mark.usefixtures("own_key_prefix")
def test_a_nan_progress_event_is_valid_json_for_every_client() -> None:
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status=Status.READY,
          create={"id": run_id, "task": "t", "enqueued_at": stamp(time.time())})  # fmt: skip
    apply(run_id, "progress", events=[("progress", {"run": run_id, "current": math.nan})])
    (_, kind, data) = stored_events(run_id)[-1]  # parsed by json.loads, as a browser would
    assert (kind, data["current"]) == ("progress", None)
    flush_all()
    assert TaskRun.objects.get(pk=run_id).flush_error == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_plain_apply_async_with_nan_reaches_the_database_whole() -> None:
    """Celery itself sends NaN (its JSON allows it): the record stores null, the row
    is written on both databases without a mark, and Celery's result is untouched."""
    sent: Any = echo.apply_async(([math.nan, 2],))
    assert math.isnan(sent.get(timeout=60)[0])
    row = eventually(lambda: TaskRun.objects.filter(pk=sent.id, status="SUCCESSFUL").first())
    assert (row.args, row.result, row.flush_error) == ([[None, 2]], [None, 2], "")


def test_progress_outside_a_task_with_nan_is_still_a_no_op() -> None:
    progress(math.nan, math.inf)
