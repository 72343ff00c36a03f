"""Django REST framework integration (``pip install "django-tasktrail[drf]"``)."""

from __future__ import annotations

try:
    import rest_framework  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "tasktrail.contrib.rest_framework needs Django REST framework: "
        'pip install "django-tasktrail[drf]"'
    ) from exc
