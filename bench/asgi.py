"""ASGI app for the uvicorn the benchmarks start: ``uvicorn bench.asgi:application``."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from django.core.asgi import get_asgi_application

from bench.celery_app import app as celery_app  # noqa: F401  (AsyncResult needs the app)

application = get_asgi_application()
