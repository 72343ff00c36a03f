"""ASGI entry point: ``uvicorn example.project.asgi:application``.

Static files (tasktrail's JavaScript client among them) are served by Django's
static files handler, so the example needs no separate web server.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.project.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from example.project import celery_app  # noqa: F401  (enqueueing needs the Celery app)

application = ASGIStaticFilesHandler(get_asgi_application())
