"""The durable record: one row per run, written behind Redis in batches."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .status import Status


class TaskRun(models.Model):
    """One enqueued invocation of a Celery task, across all its attempts.

    Rows are written by the flusher (``tasktrail.flusher``), never by request code:
    treat this model as read-only and go through ``tasktrail``'s API to change runs.
    """

    id = models.CharField(primary_key=True, max_length=255, help_text="The Celery task id.")
    task = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    queue = models.CharField(max_length=255, blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)

    progress_current = models.FloatField(null=True, blank=True)
    progress_total = models.FloatField(null=True, blank=True)
    progress_message = models.TextField(blank=True, default="")

    args = models.JSONField(null=True, blank=True)
    kwargs = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    # Why it ended other than by its own return or raise: revoked, expired, terminated,
    # lost, time_limit, rejected, ignored, not_registered, never_delivered.
    error_reason = models.CharField(max_length=32, blank=True, default="")
    # Set by the flusher when the database refused part of the record (NaN in a JSON
    # column, say): what was left out, and why. Empty once a later write succeeds whole.
    flush_error = models.TextField(blank=True, default="")

    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    # No database constraint: the flusher may write a run whose owner was just deleted.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    team = models.CharField(max_length=255, blank=True, default="")
    subject = models.CharField(max_length=255, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    parent_id = models.CharField(max_length=255, blank=True, default="")
    root_id = models.CharField(max_length=255, blank=True, default="")
    group_id = models.CharField(max_length=255, blank=True, default="")

    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.CharField(max_length=255, blank=True, default="")
    retry_of = models.CharField(max_length=255, blank=True, default="")
    # Some argument was redacted or cut on the way in: the run cannot be replayed as is.
    arguments_incomplete = models.BooleanField(default=False)

    # The trace the run belongs to (W3C traceparent or sentry-trace header of its
    # message) and the span that published it; '' when no tracer was active.
    trace_id = models.CharField(max_length=32, blank=True, default="")
    span_id = models.CharField(max_length=16, blank=True, default="")

    # A task id published again after its run is a new run under the same id: its
    # generation counts those publishes.
    generation = models.PositiveIntegerField(default=1)
    # Incremented by every change in Redis; the flusher only writes newer versions.
    version = models.BigIntegerField(default=0)
    # FAILED runs only: which failure group the run is in (tasktrail.fingerprints),
    # computed by the flusher from the task, error type and traceback.
    fingerprint = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        verbose_name = "task run"
        indexes = [
            models.Index(fields=["-enqueued_at", "-id"], name="tasktrail_recent"),
            models.Index(fields=["status", "-enqueued_at"], name="tasktrail_status"),
            models.Index(fields=["task", "-enqueued_at"], name="tasktrail_task"),
            models.Index(fields=["owner", "-enqueued_at"], name="tasktrail_owner"),
            models.Index(fields=["subject", "-enqueued_at"], name="tasktrail_subject"),
            models.Index(fields=["root_id"], name="tasktrail_root"),
            models.Index(fields=["group_id"], name="tasktrail_group"),
            models.Index(fields=["queue", "status", "enqueued_at"], name="tasktrail_queue"),
            models.Index(fields=["status", "finished_at"], name="tasktrail_finished"),
            # The latency screen: one task's runs in a time window, with the timestamps
            # the percentiles need, read from the index alone.
            models.Index(
                fields=[
                    "task",
                    "enqueued_at",
                    "status",
                    "started_at",
                    "last_attempted_at",
                    "finished_at",
                ],
                name="tasktrail_latency",
            ),
            # The failure groups screen: count, first and last seen per fingerprint in a
            # time window, from an index of the failed runs alone.
            models.Index(
                fields=["fingerprint", "finished_at"],
                name="tasktrail_fingerprint",
                condition=models.Q(status="FAILED"),
            ),
            # One group's runs, newest first, a page at a time (a group may hold tens of
            # thousands: no sort of all of them per page).
            models.Index(
                fields=["fingerprint", "-enqueued_at", "-id"],
                name="tasktrail_fingerprint_runs",
                condition=models.Q(status="FAILED"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.id} ({self.status})"


class AuditEntry(models.Model):
    """One operator action: who, when, from where. On a run (cancel, retry, replay), or, with an
    empty ``run_id`` and the subject in ``detail``, on a queue or task (pause, rate limit)."""

    class Action(models.TextChoices):
        CANCEL = "cancel", "Cancel"
        RETRY = "retry", "Retry"
        REPLAY = "replay", "Replay with edited arguments"
        RUN_NOW = "run_now", "Run schedule now"
        PAUSE = "pause", "Pause schedule"
        RESUME = "resume", "Resume schedule"
        PAUSE_QUEUE = "pause_queue", "Pause queue"
        RESUME_QUEUE = "resume_queue", "Resume queue"
        RATE_LIMIT = "rate_limit", "Set task rate limit"
        RETRY_GROUP = "retry_group", "Retry a failure group"
        MUTE_GROUP = "mute_group", "Mute a failure group"
        UNMUTE_GROUP = "unmute_group", "Unmute a failure group"

    run_id = models.CharField(max_length=255, db_index=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=255, blank=True, default="")
    address = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        ordering = ("-at",)

    def __str__(self) -> str:
        return f"{self.action} {self.run_id} by {self.actor_name or 'system'}"


class FailureGroup(models.Model):
    """What the dashboard knows of one failure fingerprint beyond its runs: a sample to
    describe it, and whether an operator muted it. Created when the groups page first
    lists the fingerprint; the counts come from the runs themselves."""

    fingerprint = models.CharField(primary_key=True, max_length=16)
    task = models.CharField(max_length=255)
    error_type = models.CharField(max_length=255, blank=True, default="")
    frame = models.CharField(max_length=500, blank=True, default="")
    sample_message = models.TextField(blank=True, default="")
    first_seen = models.DateTimeField(null=True, blank=True)  # its first failure ever
    muted = models.BooleanField(default=False)
    muted_by = models.CharField(max_length=255, blank=True, default="")
    muted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "failure group"

    def __str__(self) -> str:
        return f"{self.task} {self.error_type} ({self.fingerprint})"


# Alert claims live in their own module; imported here so Django registers the model.
from .alerts.models import AlertDelivery as AlertDelivery  # noqa: E402
