from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tasktrail", "0006_flush_error")]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="span_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="trace_id",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
        migrations.AddIndex(
            model_name="taskrun",
            index=models.Index(
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
        ),
    ]
