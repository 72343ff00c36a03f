"""Failure fingerprints on real tracebacks, formatted as the worker stores them (Celery's
``ExceptionInfo().traceback`` on failure, ``traceback.format_exception`` on retry)."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from django.core.validators import validate_email

from tasktrail.fingerprints import culprit, digest, fingerprint, frames_of, is_project
from tasktrail.operations import parse_moment

TASK = "shop.tasks.charge"


def _stored(call: Callable[[], Any]) -> str:
    """The traceback text a failed run's record holds for what ``call`` raised."""
    try:
        call()
    except Exception:
        return str(ExceptionInfo().traceback)
    raise AssertionError("it did not raise")


def _formatted(call: Callable[[], Any]) -> str:
    """As a retry stores it."""
    try:
        call()
    except Exception as exc:
        return "".join(traceback.format_exception(exc))
    raise AssertionError("it did not raise")


def charge(order: str) -> None:
    raise ValueError(f"order {order} is invalid")  # the one line of the first group


def charge_twice(order: str) -> None:
    if order:
        raise ValueError(f"order {order} has no card")  # same type, another line
    raise KeyError(order)


def parse(payload: str) -> Any:
    return json.loads(payload)  # raises in the standard library


def test_same_line_with_different_messages_is_one_group() -> None:
    first = fingerprint(TASK, "builtins.ValueError", _stored(lambda: charge("A-1")))
    second = fingerprint(TASK, "builtins.ValueError", _stored(lambda: charge("B-22")))
    assert first.digest == second.digest
    assert first.frame is not None
    assert first.frame.file == "tests/test_fingerprints.py"
    assert first.frame.function == "charge"
    assert first.frame.code.startswith('raise ValueError(f"order {order} is invalid")')
    assert first.frame.label.startswith("tests/test_fingerprints.py:")
    # As a retry formats it: the same group.
    retried = digest(TASK, "builtins.ValueError", _formatted(lambda: charge("C-3")))
    assert retried == first.digest


def test_another_line_type_or_task_is_another_group() -> None:
    one = digest(TASK, "builtins.ValueError", _stored(lambda: charge("A")))
    other_line = digest(TASK, "builtins.ValueError", _stored(lambda: charge_twice("A")))
    other_type = digest(TASK, "builtins.KeyError", _stored(lambda: charge_twice("")))
    other_task = digest("shop.tasks.refund", "builtins.ValueError", _stored(lambda: charge("A")))
    assert len({one, other_line, other_type, other_task}) == 4
    assert len(one) == 16 and int(one, 16) >= 0


def test_the_culprit_is_the_projects_frame_not_the_library_that_raised() -> None:
    for text, function in (
        (_stored(lambda: parse("{")), "parse"),  # json in the standard library
        (_stored(lambda: validate_email("nope")), "<lambda>"),  # Django in site-packages
        (_stored(lambda: parse_moment("soon")), "<lambda>"),  # tasktrail itself
    ):
        frame = culprit(text)
        assert frame is not None, text
        assert (frame.file, frame.function) == ("tests/test_fingerprints.py", function), text
        innermost = frames_of(text)[-1][1]
        assert not is_project(innermost), innermost  # the library raised


def test_without_a_project_frame_the_innermost_frame_counts() -> None:
    with pytest.raises(json.JSONDecodeError) as raised:
        json.loads("{")
    start = raised.tb.tb_next  # from json.loads down: no frame of ours
    text = "".join(traceback.format_exception(raised.type, raised.value, start))
    frame = culprit(text)
    assert frame is not None
    assert frame.file.endswith("json/decoder.py") and not is_project(json.__file__)


def test_a_chained_exception_counts_by_the_one_raised() -> None:
    def wrap() -> None:
        try:
            parse("{")
        except ValueError as exc:
            raise RuntimeError("could not read the order") from exc  # the culprit

    frame = culprit(_stored(wrap))
    assert frame is not None
    assert frame.function == "wrap"
    assert "RuntimeError" in frame.code


def test_moved_code_keeps_its_group_and_no_traceback_still_groups() -> None:
    text = _stored(lambda: charge("A"))
    frame = culprit(text)
    assert frame is not None
    moved = text.replace(f"line {frame.line}, in charge", f"line {frame.line + 40}, in charge")
    assert moved != text
    assert digest(TASK, "builtins.ValueError", moved) == digest(TASK, "builtins.ValueError", text)
    # A run lost with its worker has no traceback: grouped by task and type.
    lost = fingerprint(TASK, "tasktrail.exceptions.WorkerLost", "")
    assert lost.frame is None
    assert lost.digest == digest(TASK, "tasktrail.exceptions.WorkerLost", "")
    assert lost.digest != digest(TASK, "builtins.ValueError", "")


@pytest.mark.parametrize(
    "garbage",
    ["", "not a traceback", 'File "x.py", line nope, in f', "Traceback (most recent call last):"],
)
def test_text_that_is_no_traceback_does_not_raise(garbage: str) -> None:
    assert len(digest(TASK, "builtins.ValueError", garbage)) == 16
