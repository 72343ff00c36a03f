"""Names of tasktrail's Redis keys and pub/sub channels, in one place.

A run's keys are named after its *base*: the key prefix on a single Redis, the prefix
and its shard's hash tag on a Redis Cluster (see :mod:`tasktrail.cluster`). Structures
shared by runs (dirty set, waiting set, active sets, cancellations, firehose, counters)
exist once per base; :func:`bases` lists them.
"""

from __future__ import annotations

from functools import lru_cache

from .cluster import is_cluster_url, shard_of
from .conf import settings


def prefix() -> str:
    """The key prefix. Functions taking ``prefix`` or ``base`` accept one the caller
    already read (hot paths read the settings once per call)."""
    return str(settings.KEY_PREFIX)


def clustered() -> bool:
    """tasktrail's Redis is a Redis Cluster."""
    url = settings.snapshot()["REDIS_URL"]
    return isinstance(url, str) and _clustered(url)


@lru_cache(maxsize=16)
def _clustered(url: str) -> bool:
    # Every transition asks several times; the answer depends on the URL alone.
    return is_cluster_url(url)


def shards() -> int:
    return max(1, int(settings.CLUSTER_SHARDS)) if clustered() else 1


def bases(prefix_: str = "") -> list[str]:
    """Every base: the prefix alone on a single Redis, one per shard on a cluster."""
    start = prefix_ or prefix()
    if not clustered():
        return [start]
    return [f"{start}:{{{n}}}" for n in range(shards())]


def base_of(run_id: str, prefix_: str = "") -> str:
    """The base of a run's keys (and of the shared structures its transitions touch)."""
    start = prefix_ or prefix()
    if not clustered():
        return start
    return f"{start}:{{{shard_of(run_id, int(settings.CLUSTER_SHARDS))}}}"


def run_hash(run_id: str, prefix_: str = "") -> str:
    return f"{base_of(run_id, prefix_)}:run:{run_id}"


def run_stream(run_id: str, prefix_: str = "") -> str:
    return f"{base_of(run_id, prefix_)}:events:run:{run_id}"


def subject_stream(subject: str, prefix_: str = "") -> str:
    """A subject's stream: no run's, so never under a shard (its own slot)."""
    return f"{prefix_ or prefix()}:events:subject:{subject}"


def firehose_stream(base: str = "") -> str:
    return f"{base or prefix()}:events:firehose"


def dirty_set(base: str = "") -> str:
    return f"{base or prefix()}:dirty"


def finished_counts(base: str = "") -> str:
    """A hash of ``task|status`` -> runs finished (written by the transition script),
    one per base."""
    return f"{base or prefix()}:stats:finished"


def active_set(hostname: str, base: str = "") -> str:
    """The runs a worker is executing (one set per base)."""
    return f"{base or prefix()}:active:{hostname}"


def cancels(base: str = "") -> str:
    """Cancelled runs a worker must never start, scored by when (one per base)."""
    return f"{base or prefix()}:cancels"


def idempotency(key: str) -> str:
    return f"{prefix()}:idem:{key}"


def channel(stream_key: str) -> str:
    """The wake-up channel of an event stream: its key with ``events`` -> ``ch``."""
    return stream_key.replace(":events:", ":ch:", 1)


def channel_of(cancels_key: str) -> str:
    """The channel the transition script announces a base's cancellations on."""
    return cancels_key.removesuffix(":cancels") + ":ch:cancels"


def celery_meta(run_id: str) -> str:
    """Celery's own result key of a run (its Redis backend's default prefix)."""
    return f"celery-task-meta-{run_id}"


def waiting_set(base: str = "") -> str:
    """Runs waiting in a queue (READY or RETRYING), scored by when they began to wait."""
    return f"{base or prefix()}:waiting"


def paused_queues() -> str:
    """Celery queues paused from the dashboard; a starting worker leaves them alone."""
    return f"{prefix()}:paused-queues"


def rate_limits() -> str:
    """A hash of task name -> Celery rate limit set from the dashboard."""
    return f"{prefix()}:rate-limits"
