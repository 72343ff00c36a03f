"""The shop's pages and JSON API."""

from __future__ import annotations

from django.urls import include, path

from .views import batches, documents, drf, imports, pages, payments, reminders, reports, resources

app_name = "shop"

urlpatterns = [
    path("", pages.home, name="home"),
    # Pages
    path("reports/", reports.page, name="reports"),
    path("reports/<uuid:report_id>/download/", reports.download, name="report-download"),
    path("documents/", documents.page, name="documents"),
    path("resources/", resources.page, name="resources"),
    path("resources/<uuid:resource_uuid>/", resources.resource_page, name="resource"),
    path("payments/", payments.page, name="payments"),
    path("reminders/", reminders.page, name="reminders"),
    path("imports/", imports.page, name="imports"),
    path("batches/", batches.page, name="batches"),
    # JSON API
    path("api/reports/", reports.request_report, name="api-reports"),
    path("api/reports/<uuid:report_id>/", reports.report_detail, name="api-report"),
    path("api/documents/", documents.upload, name="api-documents"),
    path("api/documents/<int:document_id>/", documents.detail, name="api-document"),
    path("api/documents/<int:document_id>/process/", documents.process, name="api-process"),
    path("api/resources/", resources.create, name="api-resources"),
    path("api/resources/<uuid:resource_uuid>/", resources.detail, name="api-resource"),
    path("api/resources/<uuid:resource_uuid>/crawl/", resources.crawl, name="api-crawl"),
    path("api/payments/simulate/", payments.simulate, name="api-payments-simulate"),
    path("api/payments/<str:reference>/", payments.payment_detail, name="api-payment"),
    path("api/todos/", reminders.todos, name="api-todos"),
    path("api/todos/<int:todo_id>/remind/", reminders.remind, name="api-remind"),
    path("api/schedules/<str:name>/run/", reminders.run_schedule, name="api-schedule-run"),
    path("api/imports/", imports.start, name="api-imports"),
    path("api/imports/<int:import_id>/", imports.detail, name="api-import"),
    path("api/batches/", batches.start, name="api-batches"),
    path("api/batches/<uuid:batch_uuid>/", batches.detail, name="api-batch"),
    # The crawl again, the seed's way: a DRF viewset (Token, Basic or session auth)
    path("api/v2/", include(drf.router.urls)),
    path("api/v2/token/", drf.token_view, name="api-token"),
    # The payment provider's webhook (signed, CSRF-exempt)
    path("webhooks/payments/", payments.payment_webhook, name="payment-webhook"),
]
