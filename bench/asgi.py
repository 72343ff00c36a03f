"""ASGI app for the uvicorn the benchmarks start: ``uvicorn bench.asgi:application``.

With direct stream writes, as docs/deployment.md recommends; ``BENCH_DIRECT_WRITES=0``
leaves every byte to Django (the baseline of the "tasktrail-django" variants)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from django.core.asgi import get_asgi_application

from bench.celery_app import app as celery_app  # noqa: F401  (AsyncResult needs the app)
from tasktrail.asgi import direct_stream_writes

django_application = get_asgi_application()
application = (
    direct_stream_writes(django_application)
    if os.environ.get("BENCH_DIRECT_WRITES", "1") != "0"
    else django_application
)
