"""The claim table: one row per rule, group, window and channel, written before sending.

The unique constraint is the whole exactly-once story: however many evaluators see
the same firing at the same moment, one ``INSERT`` wins and the others get an
integrity error. The row is then taken for sending by a conditional ``UPDATE`` (a
lease until ``next_attempt_at``), marked sent after, and taken again by anyone once
the lease lapses, so a sender that died between the two is replaced.
"""

from __future__ import annotations

from django.db import models


class AlertDelivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    rule = models.CharField(max_length=100)
    kind = models.CharField(max_length=32)
    group = models.CharField(max_length=255, help_text="Task, queue or rule it is about.")
    window_start = models.DateTimeField()
    channel = models.CharField(max_length=100)
    count = models.PositiveIntegerField(help_text="Events in the group and window (so far).")
    subject = models.CharField(max_length=255)
    body = models.TextField()
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(help_text="Due for sending (or lease end).")
    sent_at = models.DateTimeField(null=True, blank=True)
    sender = models.CharField(max_length=255, blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        app_label = "tasktrail"
        verbose_name = "alert delivery"
        verbose_name_plural = "alert deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "group", "window_start", "channel"], name="tasktrail_alert_once"
            )
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="tasktrail_alert_due"),
            models.Index(fields=["-claimed_at"], name="tasktrail_alert_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.group} {self.window_start:%Y-%m-%d %H:%M:%S} -> {self.channel}"
