"""The Celery app the test worker runs: ``celery -A tests.celery_app worker``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tests.testapp"])
app.autodiscover_tasks(["tests.testapp"], related_name="drf_example")  # docs/drf.md's task

# tests/test_traces.py: a worker started with TASKTRAIL_TEST_OTEL=1 runs OpenTelemetry's
# Celery instrumentation in its pool process, exporting spans to memory; the task below
# hands them back.
_exported: list[Any] = []


@app.task(name="tests.otel.exported_spans")
def exported_spans() -> list[dict[str, str]]:
    from opentelemetry.trace import format_span_id, format_trace_id

    return [
        {
            "name": span.name,
            "trace_id": format_trace_id(span.context.trace_id),
            "span_id": format_span_id(span.context.span_id),
        }
        for exporter in _exported
        for span in exporter.get_finished_spans()
    ]


if os.environ.get("TASKTRAIL_TEST_OTEL"):
    from celery.signals import worker_process_init

    @worker_process_init.connect(weak=False)
    def _instrument(**_: Any) -> None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _exported.append(exporter)
        CeleryInstrumentor().instrument(tracer_provider=provider)
