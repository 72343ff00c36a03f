"""``RunSerializer``: a run as the status endpoint shows it, for DRF views and schemas."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ...http import run_urls
from ...records import RunData
from ...status import Status


class ProgressSerializer(serializers.Serializer):  # type: ignore[misc]
    percent = serializers.FloatField(allow_null=True, read_only=True)
    current = serializers.FloatField(allow_null=True, read_only=True)
    total = serializers.FloatField(allow_null=True, read_only=True)
    message = serializers.CharField(read_only=True)


class RunErrorSerializer(serializers.Serializer):  # type: ignore[misc]
    type = serializers.CharField(read_only=True)
    message = serializers.CharField(read_only=True)
    reason = serializers.CharField(allow_null=True, read_only=True)


class RunSerializer(serializers.Serializer):  # type: ignore[misc]
    """Read-only: the same JSON as ``GET <prefix>/<id>/`` (with absolute URLs when the
    serializer's context has the request)."""

    id = serializers.CharField(read_only=True)
    task = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=Status.choices, read_only=True)
    progress = ProgressSerializer(read_only=True)
    result = serializers.JSONField(read_only=True, required=False)
    error = RunErrorSerializer(read_only=True, required=False)
    attempts = serializers.IntegerField(read_only=True)
    generation = serializers.IntegerField(read_only=True)
    queue = serializers.CharField(read_only=True)
    subject = serializers.CharField(read_only=True)
    enqueued_at = serializers.DateTimeField(allow_null=True, read_only=True)
    started_at = serializers.DateTimeField(allow_null=True, read_only=True)
    finished_at = serializers.DateTimeField(allow_null=True, read_only=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True, read_only=True)
    trace_id = serializers.CharField(allow_null=True, read_only=True)
    status_url = serializers.CharField(read_only=True)
    events_url = serializers.CharField(read_only=True)

    def to_representation(self, instance: RunData) -> dict[str, Any]:
        request = self.context.get("request")
        return {**instance.as_json(), **run_urls(instance.id, request)}
