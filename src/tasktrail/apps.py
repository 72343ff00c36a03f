from __future__ import annotations

from django.apps import AppConfig


class TasktrailConfig(AppConfig):
    name = "tasktrail"
    verbose_name = "tasktrail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import alerts, checks, receivers, retention

        checks.register()
        receivers.connect()
        retention.connect()  # the periodic prune, added to celery beat
        alerts.connect()  # the alert evaluation, added to celery beat when rules exist
        _load_django_tasks_backend()


def _load_django_tasks_backend() -> None:
    """Register the Celery task that runs ``django.tasks`` functions, in every process
    that loads Django (the worker above all), when ``TASKS`` uses tasktrail's backend."""
    import django
    from django.conf import settings

    backends = getattr(settings, "TASKS", None) or {}
    if django.VERSION >= (6, 0) and any(
        str(params.get("BACKEND", "")).startswith("tasktrail.contrib.django_tasks.")
        for params in backends.values()
    ):
        from importlib import import_module

        import_module("tasktrail.contrib.django_tasks.execution")
