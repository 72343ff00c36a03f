"""URLs: the shop, login, and tasktrail's HTTP API under ``/tasks/``."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tasks/", include("tasktrail.urls")),
    path("", include("example.shop.urls")),
]

handler404 = "example.shop.views.errors.not_found"
handler500 = "example.shop.views.errors.server_error"
