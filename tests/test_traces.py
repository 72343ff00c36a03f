"""Trace ids: the real OpenTelemetry Celery instrumentation, in the publisher (this
process) and in a real prefork worker, with in-memory span exporters on both sides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.test import Client

from tasktrail import get_run
from tasktrail.models import TaskRun
from tasktrail.traces import trace_fields, trace_url
from tests.celery_app import app
from tests.conftest import ROOT, _child_env, _stop
from tests.testapp.tasks import add

pytestmark = [pytest.mark.django_db(transaction=True)]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def otel_queue(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """A worker with the instrumentation on (``TASKTRAIL_TEST_OTEL``), on a queue of
    its own, one pool process so that one exporter holds every span."""
    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-otel"
    log = open(ROOT / "tests" / f".{settings.TASKTRAIL['KEY_PREFIX']}.otel.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "-P", "prefork", "-c", "1", "-l", "warning", "-Q", queue,
            "-n", f"otel-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=ROOT, env={**_child_env(), "TASKTRAIL_TEST_OTEL": "1"},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield queue
    finally:
        _stop(process)
        log.close()


@pytest.fixture
def publisher_spans() -> Iterator[Any]:
    """This process publishes through the instrumentation; its spans stay in memory."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def _row(run_id: str, timeout: float = 30.0) -> TaskRun:
    """The run's database row once the worker's flusher wrote it finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = TaskRun.objects.filter(pk=run_id, status="SUCCESSFUL").first()
        if row is not None:
            return row
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached the database")


def test_the_record_keeps_the_trace_of_the_instrumented_publish_and_run(
    otel_queue: str, publisher_spans: Any
) -> None:
    from opentelemetry.trace import format_span_id, format_trace_id

    result = add.apply_async((2, 3), queue=otel_queue)
    assert result.get(timeout=120) == 5
    publish = [s for s in publisher_spans.get_finished_spans() if s.name.startswith("apply_async")]
    assert len(publish) == 1, [s.name for s in publisher_spans.get_finished_spans()]
    trace_id = format_trace_id(publish[0].context.trace_id)
    span_id = format_span_id(publish[0].context.span_id)

    run = get_run(result.id)
    assert (run.trace_id, run.span_id) == (trace_id, span_id)
    assert run.as_json()["trace_id"] == trace_id
    row = _row(result.id)
    assert (row.trace_id, row.span_id) == (trace_id, span_id)

    # The worker's own span of the run, from its exporter: the same trace.
    spans = app.signature("tests.otel.exported_spans").apply_async(queue=otel_queue)
    exported = spans.get(timeout=60)
    # (The module's worker keeps every span it exported: other tests' runs of ``add``
    # are there too, each in its own trace.)
    worker_run = [s for s in exported if s["name"] == f"run/{add.name}"]
    assert trace_id in {s["trace_id"] for s in worker_run}, worker_run


def test_sentry_trace_header_without_opentelemetry(otel_queue: str) -> None:
    result = add.apply_async(
        (1, 1), queue=otel_queue, headers={"sentry-trace": f"{TRACE}-{SPAN}-1"}
    )
    assert result.get(timeout=120) == 2
    row = _row(result.id)
    assert (row.trace_id, row.span_id) == (TRACE, SPAN)


def test_no_tracer_no_trace() -> None:
    from tasktrail import enqueue

    run = enqueue(add, 1, 2, countdown=3600)  # never runs: the publish alone is recorded
    assert get_run(run.id).trace_id == ""
    assert get_run(run.id).as_json()["trace_id"] is None
    from tasktrail.actions import cancel

    cancel(run.id)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": f"00-{TRACE}-{SPAN}-01"}, {"trace_id": TRACE, "span_id": SPAN}),
        ({"traceparent": f"00-{TRACE.upper()}-{SPAN}-00"}, {"trace_id": TRACE, "span_id": SPAN}),
        ({"sentry-trace": f"{TRACE}-{SPAN}"}, {"trace_id": TRACE, "span_id": SPAN}),
        (  # the W3C header wins over Sentry's
            {"traceparent": f"00-{TRACE}-{SPAN}-01", "sentry-trace": f"{'1' * 32}-{SPAN}"},
            {"trace_id": TRACE, "span_id": SPAN},
        ),
        ({"traceparent": f"00-{'0' * 32}-{SPAN}-01"}, {}),  # all-zero ids are invalid
        ({"traceparent": "garbage"}, {}),
        ({"traceparent": 42}, {}),
        ({"sentry-trace": f"{TRACE}-{SPAN}-1" + "x" * 200}, {}),
        ({}, {}),
    ],
)
def test_header_parsing(headers: dict[str, Any], expected: dict[str, str]) -> None:
    assert trace_fields(headers.get) == expected


def test_trace_url_setting_and_its_check(settings: Any) -> None:
    from tasktrail.checks import check_settings

    assert trace_url(TRACE) == ""  # no TRACE_URL: no link
    settings.TASKTRAIL = {
        **settings.TASKTRAIL,
        "TRACE_URL": "https://tempo.example/trace/{trace_id}?span={span_id}",
    }
    assert trace_url(TRACE, SPAN) == f"https://tempo.example/trace/{TRACE}?span={SPAN}"
    assert not [m for m in check_settings() if "TRACE_URL" in m.msg]
    for bad in ("javascript:alert(1)//{trace_id}", "https://tempo.example/trace/"):
        settings.TASKTRAIL = {**settings.TASKTRAIL, "TRACE_URL": bad}
        found = [m for m in check_settings() if "TRACE_URL" in m.msg]
        assert found and found[0].level == checks.ERROR and "{trace_id}" in (found[0].hint or "")


@pytest.mark.urls("tests.urls_ops")
def test_run_page_links_to_the_trace(settings: Any) -> None:
    from django.utils import timezone

    run_id = str(uuid.uuid4())
    TaskRun.objects.create(
        id=run_id, task="traced", enqueued_at=timezone.now(), trace_id=TRACE, span_id=SPAN
    )
    staff = get_user_model().objects.create_user("tracer", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get(f"/ops/runs/{run_id}/")
    assert page.status_code == 200
    assert TRACE in page.content.decode() and "tempo.example" not in page.content.decode()
    settings.TASKTRAIL = {**settings.TASKTRAIL, "TRACE_URL": "https://tempo.example/t/{trace_id}"}
    page = client.get(f"/ops/runs/{run_id}/")
    assert f'href="https://tempo.example/t/{TRACE}"' in page.content.decode()
