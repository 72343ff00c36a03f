"""pytest plugin that ``scripts/celery_integration.py`` loads into Celery's own
integration tests (``-p celery_integration_plugin``), in both passes.

Both passes: it writes, to the JSON file named by ``CELERY_INTEGRATION_OUTCOMES``, each
test's outcome, failure report, duration and reruns (pytest-rerunfailures), the test
that published each task id from the test process (so the audit can name the test of a
run), and the class of the embedded worker's result backend; and one line per finished
test to ``CELERY_INTEGRATION_PROGRESS``.

The tasktrail pass (``CELERY_INTEGRATION_TASKTRAIL=1``) also connects tasktrail the way
a Django project does, and nothing else of the test suite changes:

- ``django.setup()`` runs before any Celery app exists, so ``TasktrailConfig.ready()``
  connects tasktrail's signal receivers in the test process and, by fork, in the
  embedded worker's prefork children;
- the ``redis`` result backend alias names ``tasktrail.backend:TasktrailBackend``
  (``override_backends`` of Celery's app loader, the hook Celery gives loaders for
  this), so ``result_backend`` keeps the very ``redis://`` URL of the plain pass, every
  test that asks ``result_backend.startswith('redis')`` runs as it does there, and the
  backend the apps and the worker build from that URL is tasktrail's (the URL is
  ``TASKTRAIL['REDIS_URL']``, as ``TasktrailBackend`` requires);
- ``worker_ready`` is sent once the embedded worker's consumer is up, as the
  ``celery worker`` command does (``celery.contrib.testing`` never sends it), so
  tasktrail's flusher thread and heartbeats run in the worker as in production.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest

TASKTRAIL = os.environ.get("CELERY_INTEGRATION_TASKTRAIL") == "1"
BACKEND = "tasktrail.backend:TasktrailBackend"

# Worst first: a test's outcome is the worst of its setup, call and teardown reports.
RANK = ("error", "failed", "xpassed", "xfailed", "skipped", "passed")

_outcomes: dict[str, str] = {}
_reruns: Counter[str] = Counter()
_config: pytest.Config | None = None
_published: dict[str, str] = {}  # task id -> the test that published it
_current = ""
_durations: dict[str, float] = {}
_backend = ""  # the class of the embedded worker's result backend
_failures: dict[str, str] = {}  # nodeid -> the reports of its failures (last attempt)


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    from celery import signals
    from celery.contrib.testing.worker import test_worker_started

    signals.before_task_publish.connect(_note_publish, weak=False)
    test_worker_started.connect(_worker_started, weak=False)
    if not TASKTRAIL:
        return
    import django
    from celery.loaders.app import AppLoader

    django.setup()
    AppLoader.override_backends = {"redis": BACKEND}


def _worker_started(sender: Any = None, consumer: Any = None, **_: Any) -> None:
    global _backend
    backend = type(sender.backend)
    _backend = f"{backend.__module__}.{backend.__qualname__}"
    if TASKTRAIL:
        from celery import signals

        signals.worker_ready.send(sender=consumer)


def _note_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if _current and headers and "id" in headers:
        _published.setdefault(str(headers["id"]), _current)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    global _current
    _current = item.nodeid
    try:
        return (yield)
    finally:
        _current = ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _config is None:
        return
    category, _, _ = _config.hook.pytest_report_teststatus(report=report, config=_config)
    nodeid = report.nodeid
    _durations[nodeid] = _durations.get(nodeid, 0.0) + report.duration
    if category == "rerun":
        _reruns[nodeid] += 1
        _outcomes.pop(nodeid, None)  # the next attempt decides
        _failures.pop(nodeid, None)
        return
    if category.startswith("subtests "):
        category = category.removeprefix("subtests ")
    if category not in RANK:
        return  # a passed setup or teardown ("")
    if category in ("error", "failed"):  # a failed subtest's report, then its test's
        _failures[nodeid] = (_failures.get(nodeid, "") + "\n" + report.longreprtext)[-8000:]
    current = _outcomes.get(nodeid)
    if current is None or RANK.index(category) < RANK.index(current):
        _outcomes[nodeid] = category


def pytest_collection_finish(session: pytest.Session) -> None:
    _progress(f"collected {len(session.items)}")


def pytest_runtest_logfinish(nodeid: str) -> None:
    _progress(f"{_outcomes.get(nodeid, '?')} {nodeid}")


def _progress(line: str) -> None:
    """One line per finished test, for the script's progress display."""
    path = os.environ.get("CELERY_INTEGRATION_PROGRESS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("CELERY_INTEGRATION_OUTCOMES")
    if not path:
        return
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "outcomes": _outcomes,
                "reruns": dict(_reruns),
                "published": _published,
                "durations": _durations,
                "backend": _backend,
                "failures": _failures,
                "exitstatus": int(exitstatus),
            },
            handle,
            indent=1,
            sort_keys=True,
        )
