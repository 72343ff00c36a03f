"""The app the hostile-input suite attacks: tasktrail's API under ``tasks/``, the webhook
intake of the acceptance tier under ``hooks/`` and the dashboard under ``ops/``.

Wrapped in :func:`tasktrail.asgi.limit_request_bodies`, as the docs tell projects to.
Served as ``uvicorn --factory tests.acceptance.hostile_app:asgi``; the patterns are
built on first access, so importing this module needs no Django.
"""

from __future__ import annotations

import os
from typing import Any

BODY_TIMEOUT = 2.0  # seconds a stalled request body is waited for (408 after)


def _patterns() -> list[Any]:
    from django.urls import include, path

    from tests.acceptance.urls import urlpatterns as acceptance_patterns

    return [*acceptance_patterns, path("ops/", include("tasktrail.dashboard.urls"))]


def __getattr__(name: str) -> Any:
    if name == "urlpatterns":
        patterns = _patterns()
        globals()["urlpatterns"] = patterns
        return patterns
    raise AttributeError(name)


def asgi() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.acceptance.settings_acceptance")
    import django
    from django.conf import settings

    django.setup(set_prefix=False)
    settings.ROOT_URLCONF = "tests.acceptance.hostile_app"
    from django.core.asgi import get_asgi_application

    from tasktrail.asgi import limit_request_bodies
    from tests.acceptance.celery_app import app  # noqa: F401  (publishing needs the app)

    return limit_request_bodies(get_asgi_application(), timeout=BODY_TIMEOUT)
