"""System checks: stable ids and a hint that says how to fix it."""

from __future__ import annotations

from typing import Any

import pytest
from celery import current_app
from django.test import override_settings

from tasktrail import checks


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_clean_settings_have_no_messages() -> None:
    assert checks.check_settings() == []
    assert checks.check_serializers() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, ["tasktrail.E002"]),
        ({"REDIS_URL": "http://example.com"}, ["tasktrail.E005"]),
        ({"REDIS_URL": "redis://x", "STREAM_MAXLEN": "many"}, ["tasktrail.E004"]),
        ({"REDIS_URL": "redis://x", "STREAM_MAXLEN": -5}, ["tasktrail.E004"]),
        ({"REDIS_URL": "redis://x", "FLUSH_IN_WORKER": 1}, ["tasktrail.E004"]),
        ({"REDIS_URL": "redis://x", "STREAM_MAXLN": 5}, ["tasktrail.W001"]),
        ("redis://x", ["tasktrail.E004"]),
    ],
)
def test_bad_settings_are_reported(value: Any, expected: list[str]) -> None:
    with override_settings(TASKTRAIL=value):
        messages = checks.check_settings()
    assert ids(messages) == expected
    assert all(m.hint for m in messages)


def test_missing_redis_url_hint_shows_the_setting() -> None:
    with override_settings(TASKTRAIL={}):
        (message,) = checks.check_settings()
    assert "TASKTRAIL = {'REDIS_URL'" in message.hint


def test_pickle_is_refused() -> None:
    conf = current_app.conf
    saved = conf.accept_content
    conf.accept_content = ["json", "pickle"]
    try:
        (message,) = checks.check_serializers()
    finally:
        conf.accept_content = saved
    assert message.id == "tasktrail.E003"
    assert "CELERY_ACCEPT_CONTENT = ['json']" in message.hint


def test_app_missing_from_installed_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks.apps, "is_installed", lambda name: False)
    (message,) = checks.check_installed()
    assert message.id == "tasktrail.E001"
    assert "INSTALLED_APPS" in message.hint


def test_settings_snapshot_follows_a_replaced_tasktrail_dict(settings: Any) -> None:
    from tasktrail.conf import settings as tasktrail_settings

    before = tasktrail_settings.snapshot()["STREAM_MAXLEN"]
    settings.TASKTRAIL = {**settings.TASKTRAIL, "STREAM_MAXLEN": before + 7}
    assert tasktrail_settings.snapshot()["STREAM_MAXLEN"] == before + 7
    maxlen = tasktrail_settings.STREAM_MAXLEN
    assert maxlen == before + 7


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("tasktrail.backend.TasktrailBackend", []),
        ("tasktrail.backend:TasktrailBackend", []),
        ("redis://127.0.0.1:6379/9", ["tasktrail.W002"]),
        (None, ["tasktrail.W002"]),
    ],
)
def test_a_result_backend_other_than_tasktrails_is_a_warning(
    backend: Any, expected: list[str]
) -> None:
    saved = current_app.conf.result_backend
    current_app.conf.result_backend = backend  # where the Django setting is not set
    try:
        with override_settings(CELERY_RESULT_BACKEND=backend):
            messages = checks.check_result_backend()
    finally:
        current_app.conf.result_backend = saved
    assert ids(messages) == expected
    assert all("RecordingBackendMixin" in m.hint for m in messages)


def test_a_backend_with_the_recording_mixin_is_fine() -> None:
    from celery.backends.redis import RedisBackend

    from tasktrail.backend import RecordingBackendMixin

    class Recorded(RecordingBackendMixin, RedisBackend):  # type: ignore[misc]
        pass

    with override_settings(CELERY_RESULT_BACKEND=Recorded):
        assert checks.check_result_backend() == []


def test_a_recording_backend_named_by_its_dotted_path_is_fine() -> None:
    with override_settings(CELERY_RESULT_BACKEND="tests.test_checks.RecordedRedis"):
        assert checks.check_result_backend() == []


def _recorded_redis() -> type:
    from celery.backends.redis import RedisBackend

    from tasktrail.backend import RecordingBackendMixin

    return type("RecordedRedis", (RecordingBackendMixin, RedisBackend), {})


RecordedRedis = _recorded_redis()
