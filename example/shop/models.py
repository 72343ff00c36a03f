"""The example's own data: what each scenario works on.

The runs themselves live in tasktrail; these models hold only domain state
(a document's processing status, a payment, a generated report file, ...).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    stock = models.IntegerField(default=0)
    threshold = models.IntegerField(default=5, help_text="Alert when stock falls below this.")
    stock_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    revalued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Sale(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="sales")
    quantity = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    sold_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id} at {self.sold_at:%Y-%m-%d}"


class Report(models.Model):
    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "Excel (XLSX)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    start_date = models.DateField()
    end_date = models.DateField()
    format = models.CharField(max_length=8, choices=Format.choices)
    file = models.FileField(upload_to="reports/", blank=True)
    rows = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"sales {self.start_date}..{self.end_date} ({self.format})"


class Document(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    error_message = models.TextField(blank=True)
    word_count = models.IntegerField(default=0)
    summary = models.TextField(blank=True)
    # How many attempts the (simulated) text-extraction service fails before it
    # answers: 0 succeeds at once, 1-3 succeed after retries, 4+ exhaust them.
    flaky_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title


class Resource(models.Model):
    """A site to crawl; its runs publish on the channel ``crawl:<uuid>`` (seed 000)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    url = models.URLField()
    max_pages = models.PositiveSmallIntegerField(default=12)
    delay = models.FloatField(default=0.3, help_text="Politeness delay between requests (s).")
    pages_found = models.IntegerField(default=0)
    broken_links = models.IntegerField(default=0)
    last_crawled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url

    @property
    def channel(self) -> str:
        return f"crawl:{self.uuid}"


class Payment(models.Model):
    """One payment, created by the webhook task; processed exactly once per reference."""

    reference = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    times_processed = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.reference


class Todo(models.Model):
    """Seed 004's task list: reminders by e-mail, old completed items cleaned up."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETED = "completed", "Completed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    due_date = models.DateField()
    status = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    completed_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.title


class ImportJob(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    file = models.FileField(upload_to="imports/")
    rows_imported = models.IntegerField(default=0)
    rows_rejected = models.IntegerField(default=0)
    notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"import {self.pk}"

    @property
    def subject(self) -> str:
        return f"import:{self.pk}"


class Batch(models.Model):
    """Seed 002's chunking: revalue products in chunks of 100, as a Celery group."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    size = models.PositiveIntegerField(default=1000)
    chunk_size = models.PositiveIntegerField(default=100)
    processed = models.IntegerField(default=0)
    # The Celery group of chunk runs, as tasktrail.enqueue(group(...)) returned it.
    group_id = models.CharField(max_length=255, blank=True, default="")
    run_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"batch {self.uuid}"

    @property
    def subject(self) -> str:
        return f"batch:{self.uuid}"
