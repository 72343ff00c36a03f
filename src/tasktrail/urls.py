"""Mount under any prefix: ``path("tasks/", include("tasktrail.urls"))``."""

from __future__ import annotations

from django.apps import apps
from django.urls import URLPattern, path, re_path

from .checks import not_installed_urlpatterns
from .ids import register_converter

app_name = "tasktrail"
urlpatterns: list[URLPattern] = []

if apps.is_installed("tasktrail"):
    from . import views

    register_converter()
    urlpatterns = [
        path("", views.run_list, name="run-list"),
        path("subjects/<str:subject>/events/", views.subject_events, name="subject-events"),
        path("<runid:run_id>/", views.run_detail, name="run-detail"),
        path("<runid:run_id>/events/", views.run_events, name="run-events"),
        path("<runid:run_id>/cancel/", views.run_cancel, name="run-cancel"),
        path("<runid:run_id>/retry/", views.run_retry, name="run-retry"),
        re_path(r"^(?P<rest>.*)$", views.not_found_view),
    ]
else:
    # Importing the views would fail on the models; Django's URL check says E001.
    urlpatterns = not_installed_urlpatterns()
