from __future__ import annotations

from django.apps import apps
from django.urls import URLPattern, URLResolver, include, path

from bench import seeds_views

urlpatterns: list[URLPattern | URLResolver] = [
    path("seeds/stream/<str:task_id>/", seeds_views.seeds_stream),
    path("seeds/status/<str:task_id>/", seeds_views.seeds_status),
    path("seeds/progress/<str:task_id>/", seeds_views.progress_poll),
]
if apps.is_installed("tasktrail"):
    urlpatterns.append(path("tasks/", include("tasktrail.urls")))
