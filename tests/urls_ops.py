"""tests.urls plus the dashboard at /ops/ and /metrics (until tests/urls.py has them).

Also an ASGI factory for uvicorn (``--factory tests.urls_ops:asgi``) that serves
this URLconf, for the browser tests while tests/urls.py does not mount /ops/.
The patterns are built on first access, so importing the factory needs no Django.
"""

from __future__ import annotations

import os
from typing import Any


def _patterns() -> list[Any]:
    from django.urls import include, path

    from tasktrail.metrics import metrics_view
    from tests.urls import urlpatterns as base_patterns

    return [
        *(p for p in base_patterns if str(p.pattern) not in ("ops/", "metrics")),
        path("ops/", include("tasktrail.dashboard.urls")),
        path("metrics", metrics_view),
    ]


def __getattr__(name: str) -> Any:
    if name == "urlpatterns":
        patterns = _patterns()
        globals()["urlpatterns"] = patterns
        return patterns
    raise AttributeError(name)


def asgi() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    django.setup(set_prefix=False)
    settings.ROOT_URLCONF = "tests.urls_ops"
    from django.core.asgi import get_asgi_application

    from tests.celery_app import app  # noqa: F401  (publishing needs the app)

    return get_asgi_application()
