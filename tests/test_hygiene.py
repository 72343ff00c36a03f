"""Data hygiene: secrets are hidden before anything is stored; big values are cut visibly."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from tasktrail import Status, enqueue
from tasktrail.actions import ActionRefused, retry
from tasktrail.redaction import HIDDEN, redact_text
from tests.helpers import client, stored_events
from tests.testapp.tasks import echo, sign_in

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_sensitive_arguments_never_reach_the_record_or_the_feed(worker: object) -> None:
    run = enqueue(
        sign_in, "ada", "hunter2", kwargs={"options": {"api_key": "k-123", "lang": "en"}}
    ).wait(timeout=20)
    assert run.status == Status.SUCCESSFUL  # the task itself got the real password
    assert run.args == ["ada", HIDDEN]
    assert run.kwargs == {"options": {"api_key": HIDDEN, "lang": "en"}}
    feed = [data["message"] for _, kind, data in stored_events(run.id) if kind == "feed"]
    assert feed == [f"signing in ada with password={HIDDEN}"]
    everything = b"".join(
        v
        for _, fields in client().xrange(f"{__import__('tasktrail').keys.run_stream(run.id)}")
        for v in fields.values()
    )
    assert b"hunter2" not in everything
    assert run.arguments_incomplete
    # A failed run whose arguments were hidden cannot be replayed with placeholders.
    failed = enqueue(sign_in, "nobody", "pw").wait(timeout=20)
    assert failed.status == Status.FAILED
    with pytest.raises(ActionRefused, match="redacted or cut"):
        retry(failed.id)


def test_oversized_arguments_and_results_are_cut_with_a_marker(worker: object) -> None:
    from django.conf import settings

    with override_settings(
        TASKTRAIL={**settings.TASKTRAIL, "MAX_ARGUMENT_BYTES": 100, "MAX_RESULT_BYTES": 100}
    ):
        run = enqueue(echo, "x" * 1000)
    done = run.wait(timeout=20)
    assert done.args is not None
    marker = done.args if isinstance(done.args, dict) else json.loads(json.dumps(done.args))
    assert marker["truncated"] is True
    assert marker["bytes"] > 1000
    assert done.arguments_incomplete


def test_redact_text_hides_only_sensitive_values() -> None:
    assert redact_text('token=abc, user=bob "secret": "s3" Authorization: Bearer') == (
        f'token={HIDDEN}, user=bob "secret": "{HIDDEN}" Authorization: {HIDDEN}'
    )
