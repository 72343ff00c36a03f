"""Names of tasktrail's Redis keys and pub/sub channels, in one place."""

from __future__ import annotations

from .conf import settings


def prefix() -> str:
    """The key prefix. Functions taking ``base`` accept one the caller already read
    (hot paths read the settings once per call)."""
    return str(settings.KEY_PREFIX)


def run_hash(run_id: str, base: str = "") -> str:
    return f"{base or prefix()}:run:{run_id}"


def run_stream(run_id: str, base: str = "") -> str:
    return f"{base or prefix()}:events:run:{run_id}"


def subject_stream(subject: str) -> str:
    return f"{prefix()}:events:subject:{subject}"


def firehose_stream(base: str = "") -> str:
    return f"{base or prefix()}:events:firehose"


def dirty_set(base: str = "") -> str:
    return f"{base or prefix()}:dirty"


def finished_counts() -> str:
    """A hash of ``task|status`` -> runs finished (written by the transition script)."""
    return f"{prefix()}:stats:finished"


def idempotency(key: str) -> str:
    return f"{prefix()}:idem:{key}"


def channel(stream_key: str) -> str:
    """The wake-up channel of an event stream: its key with ``events`` -> ``ch``."""
    return stream_key.replace(":events:", ":ch:", 1)


def celery_meta(run_id: str) -> str:
    """Celery's own result key of a run (its Redis backend's default prefix)."""
    return f"celery-task-meta-{run_id}"


def waiting_set(base: str = "") -> str:
    """Runs waiting in a queue (READY or RETRYING), scored by when they began to wait."""
    return f"{base or prefix()}:waiting"
