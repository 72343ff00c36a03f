"""System checks: configuration mistakes fail at start-up with a hint, not in the worker."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.apps import apps
from django.conf import settings as django_settings
from django.core import checks

from .conf import SETTINGS


def register() -> None:
    checks.register(check_settings, "tasktrail")
    checks.register(check_serializers, "tasktrail")
    checks.register(check_result_backend, "tasktrail")


def check_installed(**_: Any) -> list[checks.CheckMessage]:
    if apps.is_installed("tasktrail"):
        return []
    return [
        checks.Error(
            "tasktrail's URLs are included but the app is not installed.",
            hint="Add 'tasktrail' to INSTALLED_APPS.",
            id="tasktrail.E001",
        )
    ]


def check_settings(**_: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    user = getattr(django_settings, "TASKTRAIL", {})
    if not isinstance(user, dict):
        return [
            checks.Error(
                "TASKTRAIL must be a dict.",
                hint="TASKTRAIL = {'REDIS_URL': 'redis://127.0.0.1:6379/0'}",
                id="tasktrail.E004",
            )
        ]
    url = user.get("REDIS_URL")
    if not url:
        errors.append(
            checks.Error(
                "No Redis URL configured for tasktrail's event log.",
                hint="Set TASKTRAIL = {'REDIS_URL': 'redis://127.0.0.1:6379/0'} in your settings.",
                id="tasktrail.E002",
            )
        )
    elif not isinstance(url, str) or urlparse(url).scheme not in ("redis", "rediss", "unix"):
        errors.append(
            checks.Error(
                f"TASKTRAIL['REDIS_URL'] is not a Redis URL: {url!r}.",
                hint="Use redis://host:port/db, rediss:// (TLS) or unix:///path/to/socket.",
                id="tasktrail.E005",
            )
        )
    for name, value in user.items():
        setting = SETTINGS.get(name)
        if setting is None:
            errors.append(
                checks.Warning(
                    f"Unknown tasktrail setting TASKTRAIL[{name!r}].",
                    hint=f"Known settings: {', '.join(sorted(SETTINGS))}.",
                    id="tasktrail.W001",
                )
            )
        elif name != "REDIS_URL" and (
            not isinstance(value, setting.types)
            or (isinstance(value, bool) and bool not in setting.types)
            or (isinstance(value, int | float) and not isinstance(value, bool) and value <= 0)
        ):
            kinds = " or ".join(t.__name__ for t in setting.types)
            errors.append(
                checks.Error(
                    f"TASKTRAIL[{name!r}] = {value!r} is invalid.",
                    hint=(
                        f"It must be a positive {kinds} ({setting.help}); "
                        f"default {setting.default!r}."
                    ),
                    id="tasktrail.E004",
                )
            )
    return errors


def _celery_conf() -> Any:
    from celery import current_app

    return current_app.conf


def check_serializers(**_: Any) -> list[checks.CheckMessage]:
    conf = _celery_conf()
    accepted = {str(c).lower() for c in (conf.accept_content or ())}
    chosen = {str(conf.task_serializer).lower(), str(conf.result_serializer).lower()}
    risky = sorted(
        {c for c in accepted | chosen if "pickle" in c or c == "application/x-python-serialize"}
    )
    if not risky:
        return []
    return [
        checks.Error(
            f"Celery accepts or sends pickle ({', '.join(risky)}): a message from anyone who "
            "can write to the broker can run code in your workers.",
            hint="Set CELERY_ACCEPT_CONTENT = ['json'], CELERY_TASK_SERIALIZER = 'json' and "
            "CELERY_RESULT_SERIALIZER = 'json'; pass ids and plain data to tasks.",
            id="tasktrail.E003",
        )
    ]


def check_result_backend(**_: Any) -> list[checks.CheckMessage]:
    """Without tasktrail's result backend, states Celery only writes there never reach
    the record: ``update_state`` progress, chain steps and chord bodies Celery fails
    without running them, ``Ignore`` after ``update_state``."""
    from celery.app.backends import by_url

    from .backend import BACKEND_PATH

    # The Django setting (Celery's conventional namespace) when the project's Celery app
    # is not loaded in this process (manage.py check usually runs without it).
    backend = getattr(django_settings, "CELERY_RESULT_BACKEND", None)
    if backend is None:
        backend = _celery_conf().result_backend
    name = backend if isinstance(backend, str) else getattr(backend, "__qualname__", "")
    try:
        found: Any = backend if isinstance(backend, type) else by_url(backend)
        backend_class = found if isinstance(found, type) else found[0]
    except Exception:  # an unknown backend: Celery reports it itself
        backend_class = None
    if getattr(backend_class, "records_runs", False):
        return []
    return [
        checks.Warning(
            f"Celery's result backend is {name or 'not set'!r}, not tasktrail's: the record "
            "misses what Celery stores only there (update_state progress, chain steps and "
            "chord bodies failed without running, Ignore after update_state).",
            hint=f"Set CELERY_RESULT_BACKEND = {BACKEND_PATH!r}; to keep another backend, "
            "mix tasktrail.backend.RecordingBackendMixin into its class "
            "(docs/reliability.md).",
            id="tasktrail.W002",
        )
    ]
