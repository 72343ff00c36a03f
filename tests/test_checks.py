"""System checks: stable ids and a hint that says how to fix it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.test import override_settings

from tasktrail import checks
from tests.conftest import ROOT


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


# The checks below run `django-admin` in a subprocess: a project as users configure it.
def _admin(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def _env(settings_module: str, *paths: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = settings_module
    env.update(extra)
    return env


def test_urls_included_without_the_app_installed_say_e001(tmp_path: Path) -> None:
    """Both URL modules mounted, "tasktrail" missing from INSTALLED_APPS: `check` fails
    with E001 and its hint, not a RuntimeError from the models (issue 11, item 16)."""
    (tmp_path / "uninstalled_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a not in ('tasktrail', 'tests.testapp')]\n"
        "ROOT_URLCONF = 'uninstalled_urls'\n"
    )
    (tmp_path / "uninstalled_urls.py").write_text(
        "from django.urls import include, path\n"
        "urlpatterns = [path('tasks/', include('tasktrail.urls')),\n"
        "               path('ops/', include('tasktrail.dashboard.urls'))]\n"
    )
    done = _admin("check", env=_env("uninstalled_settings", tmp_path), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tasktrail.E001" in done.stderr
    assert "Add 'tasktrail' to INSTALLED_APPS" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def half_migrated_database(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A database of this test's own, migrated up to tasktrail 0004 only; yields the
    environment of a subprocess that uses it."""
    if django_settings.DB_KIND == "postgres":
        import psycopg

        name = f"tt_half_{uuid.uuid4().hex[:10]}"
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    else:
        name = str(tmp_path / "half.sqlite3")
    env = _env("tests.settings", TASKTRAIL_TEST_DB_NAME=name)
    try:
        done = _admin("migrate", "tasktrail", "0004", "-v", "0", env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        yield env
    finally:
        if django_settings.DB_KIND == "postgres":
            with psycopg.connect(
                "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
            ) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_unapplied_migrations_are_named_by_check_and_healthcheck(
    half_migrated_database: dict[str, str],
) -> None:
    """`check` warns, `healthcheck` says DOWN and how to fix it (issue 11, item 5)."""
    env = half_migrated_database
    check = _admin("check", env=env, cwd=ROOT)
    assert check.returncode == 0, check.stderr  # a warning: `migrate` runs the checks too
    assert "tasktrail.W003" in check.stderr
    assert "0005_generation_and_reason" in check.stderr
    assert "manage.py migrate" in check.stderr
    health = _admin("tasktrail", "healthcheck", env=env, cwd=ROOT)
    line = next(x for x in health.stdout.splitlines() if x.startswith("migrations"))
    assert "DOWN" in line and "0005_generation_and_reason" in line, health.stdout
    assert "manage.py migrate" in line
    assert health.returncode == 1
    migrate = _admin("migrate", "-v", "0", env=env, cwd=ROOT)
    assert migrate.returncode == 0, migrate.stderr  # the warning never blocks its own fix


def test_the_flusher_names_unapplied_migrations(
    half_migrated_database: dict[str, str],
) -> None:
    """A worker's flusher on a half-migrated database says why it cannot write, and
    keeps the run due in Redis instead of dropping it."""
    prefix = f"{django_settings.TASKTRAIL['KEY_PREFIX']}-half-{uuid.uuid4().hex[:6]}"
    script = (
        "import django, logging, time, uuid\n"
        "django.setup()\n"
        "from tasktrail import flusher, keys\n"
        "from tasktrail.transitions import apply, stamp\n"
        "logging.basicConfig(level=logging.ERROR)\n"
        "run_id = str(uuid.uuid4())\n"
        "apply(run_id, 'publish', status='READY', create={'id': run_id, 'task': 't',\n"
        "      'enqueued_at': stamp(time.time())})\n"
        "flusher.start(); time.sleep(1.5); flusher.stop()\n"
        "from tasktrail.connection import get_redis\n"
        "print('still-due', get_redis().zscore(keys.dirty_set(), run_id) is not None)\n"
    )
    env = {**half_migrated_database, "TASKTRAIL_TEST_PREFIX": prefix}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert "still-due True" in done.stdout, done.stdout + done.stderr
    assert "0005_generation_and_reason" in done.stderr
    assert "manage.py migrate" in done.stderr


def test_metrics_mounted_without_prometheus_client_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tests.urls mounts /metrics: without the extra, `check` says so instead of a 500
    at scrape time (issue 11, item 16)."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with override_settings(DEBUG=True):
        (message,) = checks.check_metrics()
    assert message.id == "tasktrail.E006"
    assert 'pip install "django-tasktrail[prometheus]"' in message.hint


def test_metrics_open_to_anyone_in_production_is_a_warning(settings: Any) -> None:
    settings.DEBUG = False
    assert ids(checks.check_metrics()) == ["tasktrail.W004"]
    settings.TASKTRAIL = {**settings.TASKTRAIL, "METRICS_TOKEN": "s3cret"}
    assert checks.check_metrics() == []


def test_metrics_not_mounted_is_no_business_of_the_check(settings: Any) -> None:
    settings.DEBUG = False
    settings.ROOT_URLCONF = "tasktrail.urls"
    assert checks.check_metrics() == []
