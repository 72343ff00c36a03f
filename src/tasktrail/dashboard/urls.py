"""Mount under any prefix: ``path("ops/", include("tasktrail.dashboard.urls"))``."""

from __future__ import annotations

from django.apps import apps
from django.urls import URLPattern, path

from ..checks import not_installed_urlpatterns
from ..ids import register_converter

app_name = "tasktrail-dashboard"
urlpatterns: list[URLPattern] = not_installed_urlpatterns()

if apps.is_installed("tasktrail"):  # else the views would fail on the models at import
    from . import (
        actions,
        alerts,
        assets,
        failure_groups,
        latency,
        queue_controls,
        schedules,
        streams,
        views,
        workflow,
    )
    from .replay import replay_run

    register_converter()
    urlpatterns = [
        path("", views.overview, name="overview"),
        path("assets/<str:name>", assets.asset, name="asset"),
        path("runs/", views.runs, name="runs"),
        path("runs/events/", streams.firehose, name="firehose"),
        path("runs/<runid:run_id>/", views.run_detail, name="run"),
        path("runs/<runid:run_id>/events/", streams.run_events, name="run-events"),
        path("runs/<runid:run_id>/timeline/", workflow.timeline_page, name="workflow"),
        path("runs/<runid:run_id>/timeline/data/", workflow.timeline_data, name="workflow-data"),
        path("runs/<runid:run_id>/retry/", actions.retry_run, name="retry"),
        path("runs/<runid:run_id>/cancel/", actions.cancel_run, name="cancel"),
        path("runs/<runid:run_id>/replay/", replay_run, name="replay"),
        path("failures/", views.failures, name="failures"),
        path("failures/groups/", failure_groups.groups, name="failure-groups"),
        path(
            "failures/groups/<str:fingerprint>/",
            failure_groups.group_detail,
            name="failure-group",
        ),
        path(
            "failures/groups/<str:fingerprint>/retry/",
            failure_groups.retry_group,
            name="failure-group-retry",
        ),
        path(
            "failures/groups/<str:fingerprint>/mute/",
            failure_groups.mute_group,
            name="failure-group-mute",
        ),
        path("bulk/<str:action>/", actions.bulk_confirm, name="bulk-confirm"),
        path("bulk/<str:action>/apply/", actions.bulk_apply, name="bulk-apply"),
        path("workers/", views.workers, name="workers"),
        path("queues/", views.queues, name="queues"),
        path("queues/pause/", queue_controls.toggle_queue, name="queue-toggle"),
        path("queues/rate-limit/", queue_controls.rate_limit, name="rate-limit"),
        path("latency/", latency.latency_view, name="latency"),
        path("schedules/", schedules.schedules, name="schedules"),
        path("schedules/run-now/", schedules.run_now, name="schedule-run-now"),
        path("schedules/toggle/", schedules.toggle, name="schedule-toggle"),
        path("alerts/", alerts.alerts, name="alerts"),
    ]
