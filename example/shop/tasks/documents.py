"""Seed 001: document processing with staged progress, retries with backoff, failure."""

from __future__ import annotations

import time
from typing import Any

from celery.utils.time import get_exponential_backoff_interval

from tasktrail import feed, progress, tracked_task

from ..models import Document

# Seconds each stage's (simulated) service call takes, so the stages can be watched.
STAGE_SECONDS = 0.4


class DocumentMissing(Exception):
    """The document was deleted before a worker got to it: retrying cannot help."""


class ExtractionUnavailable(Exception):
    """The text-extraction service did not answer: a transient error worth retrying."""


def _extract(document: Document, attempt: int) -> str:
    time.sleep(STAGE_SECONDS)
    if attempt <= document.flaky_attempts:
        raise ExtractionUnavailable(
            f"extraction service unavailable (attempt {attempt} of {document.flaky_attempts + 1}"
            " needed)"
        )
    return document.body


def _summary(text: str) -> str:
    first = text.strip().split(".")[0]
    return (first[:197] + "...") if len(first) > 200 else first


@tracked_task(bind=True, max_retries=3, retry_backoff=1, retry_backoff_max=30)
def process_document(self: Any, document_id: int) -> dict[str, Any]:
    """Extract (25), count (50), summarise (75), save (100); retry transient errors."""
    try:
        document = Document.objects.get(pk=document_id)
    except Document.DoesNotExist:
        feed(f"Document {document_id} not found; not retrying", "error")
        raise DocumentMissing(f"Document {document_id} does not exist") from None

    attempt = self.request.retries + 1
    Document.objects.filter(pk=document.pk).update(status=Document.State.PROCESSING)
    feed(f"Attempt {attempt}: processing {document.title!r}")
    try:
        text = _extract(document, attempt)
    except ExtractionUnavailable as exc:
        if self.request.retries >= self.max_retries:
            Document.objects.filter(pk=document.pk).update(
                status=Document.State.FAILED, error_message=str(exc)
            )
            feed(f"Giving up after {attempt} attempts: {exc}", "error")
            raise
        delay = get_exponential_backoff_interval(
            factor=self.retry_backoff,
            retries=self.request.retries,
            maximum=self.retry_backoff_max,
            full_jitter=False,
        )
        feed(f"{exc}; retrying in {delay}s", "warning")
        raise self.retry(exc=exc, countdown=delay) from None
    progress(25, 100, "Text extracted")

    time.sleep(STAGE_SECONDS)
    words = len(text.split())
    progress(50, 100, f"{words} words counted")

    time.sleep(STAGE_SECONDS)
    summary = _summary(text)
    progress(75, 100, "Summary written")

    time.sleep(STAGE_SECONDS)
    Document.objects.filter(pk=document.pk).update(
        status=Document.State.COMPLETED, word_count=words, summary=summary, error_message=""
    )
    progress(100, 100, "Saved")
    feed(f"Processed {document.title!r}: {words} words", "success")
    return {"document": document.pk, "words": words, "summary": summary}
