"""The home page: every scenario, with what it shows and where its API is."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

SCENARIOS = [
    {
        "slug": "reports",
        "title": "Sales report",
        "seed": "002",
        "what": "POST a date range and a format, get 202 with the run's URLs; the finished "
        "run carries a file_url to a CSV or XLSX that only you can download.",
        "api": "POST /api/reports/",
    },
    {
        "slug": "documents",
        "title": "Document processing",
        "seed": "001",
        "what": "Staged progress 25/50/75/100; a flaky extraction service retried with "
        "exponential backoff; failure after the last retry; a deleted document fails at once.",
        "api": "POST /api/documents/",
    },
    {
        "slug": "resources",
        "title": "Resource crawl",
        "seed": "000",
        "what": "A crawler feeds info, warning, error and success lines on the channel "
        "crawl:<uuid>; the resource's page follows every run about it.",
        "api": "POST /api/resources/",
    },
    {
        "slug": "payments",
        "title": "Payment webhook",
        "seed": "002",
        "what": "HMAC-SHA256-signed deliveries; a forged one gets 400 and enqueues nothing; "
        "ten identical ones at once are one run, processed once.",
        "api": "POST /webhooks/payments/",
    },
    {
        "slug": "reminders",
        "title": "Reminders and schedules",
        "seed": "002, 004",
        "what": "An e-mail reminder through Django's e-mail framework; beat runs the cleanup "
        "daily and the low-stock alert every six hours.",
        "api": "POST /api/todos/<id>/remind/",
    },
    {
        "slug": "imports",
        "title": "Import chain",
        "seed": "003, 004",
        "what": "process_import over a real CSV, then send_notification with its result; "
        "the page follows both runs on import:<id>.",
        "api": "POST /api/imports/",
    },
    {
        "slug": "batches",
        "title": "Chunked batch",
        "seed": "002",
        "what": "1,000 products revalued in chunks of 100 as one Celery group; the bar counts "
        "finished chunks on the batch's subject stream, batch:<uuid>.",
        "api": "POST /api/batches/",
    },
]


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/home.html", {"scenarios": SCENARIOS})
