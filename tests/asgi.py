"""ASGI app for the uvicorn the stream tests start: with direct stream writes, as the
docs recommend, unless ``TASKTRAIL_TEST_DIRECT_WRITES=0`` (Django writes every byte)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.asgi import get_asgi_application

from tasktrail.asgi import direct_stream_writes
from tests.celery_app import app as celery_app  # noqa: F401  (publishing needs the app)

application = get_asgi_application()
if os.environ.get("TASKTRAIL_TEST_DIRECT_WRITES", "1") != "0":
    application = direct_stream_writes(application)
