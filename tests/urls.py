from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tasktrail.metrics import metrics_view
from tests.testapp import drf_example
from tests.testapp.views import DocumentByUuidViewSet, ReportViewSet, start_with_delay

router = SimpleRouter()
router.register("reports", ReportViewSet, basename="report")
router.register("documents-by-uuid", DocumentByUuidViewSet, basename="document-by-uuid")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tasks/", include("tasktrail.urls")),
    path("ops/", include("tasktrail.dashboard.urls")),
    path("metrics", metrics_view),
    path("start-with-delay/", start_with_delay),
    path("api/", include(router.urls)),
    path("api/", include(drf_example.router.urls)),
]
