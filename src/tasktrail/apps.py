from __future__ import annotations

from django.apps import AppConfig


class TasktrailConfig(AppConfig):
    name = "tasktrail"
    verbose_name = "tasktrail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, receivers, retention

        checks.register()
        receivers.connect()
        retention.connect()  # the periodic prune, added to celery beat
