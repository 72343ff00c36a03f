"""ASGI entry point: ``uvicorn example.project.asgi:application``.

Static files (tasktrail's JavaScript client among them) are served by Django's
static files handler, so the example needs no separate web server. Live events are
written to each stream's client by the process's subscriber itself
(``direct_stream_writes``).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.project.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from example.project import celery_app  # noqa: F401  (enqueueing needs the Celery app)
from tasktrail.asgi import direct_stream_writes

application = direct_stream_writes(ASGIStaticFilesHandler(get_asgi_application()))
