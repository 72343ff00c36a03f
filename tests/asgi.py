"""ASGI app for the uvicorn the stream tests start."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.asgi import get_asgi_application

from tests.celery_app import app as celery_app  # noqa: F401  (publishing needs the app)

application = get_asgi_application()
