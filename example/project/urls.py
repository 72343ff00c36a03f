"""URLs: the shop, login, tasktrail's HTTP API under ``/tasks/``, the staff dashboard
under ``/ops/`` and Prometheus metrics at ``/metrics``."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from tasktrail.metrics import metrics_view

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tasks/", include("tasktrail.urls")),
    path("ops/", include("tasktrail.dashboard.urls")),  # staff only
    path("metrics", metrics_view),  # a staff session, or the bearer token below
    path("", include("example.shop.urls")),
]

handler404 = "example.shop.views.errors.not_found"
handler500 = "example.shop.views.errors.server_error"
