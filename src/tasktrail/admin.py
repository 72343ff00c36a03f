"""A read-only admin: runs change through tasktrail's API (audited), never by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import TaskRun


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "task", "status", "attempts", "owner", "enqueued_at", "finished_at")
    list_filter = ("status", "task", "queue")
    search_fields = ("id", "task", "subject", "idempotency_key")
    date_hierarchy = "enqueued_at"
    show_full_result_count = False  # no COUNT(*) over a large table
    ordering = ("-enqueued_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
