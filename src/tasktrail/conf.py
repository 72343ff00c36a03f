"""The ``TASKTRAIL`` settings namespace, read lazily so ``override_settings`` works."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One documented setting: its type(s), its default and what it is for."""

    types: tuple[type, ...]
    default: Any
    help: str


SETTINGS: dict[str, Setting] = {
    "REDIS_URL": Setting(
        types=(str,),
        default=None,
        help="Redis that holds the event log and the hot run records (required): "
        "redis://, rediss://, unix://, redis+sentinel:// (see Redis Sentinel below) or "
        "redis+cluster:// (see Redis Cluster below).",
    ),
    "REDIS_POOL_SIZE": Setting(
        types=(int,),
        default=8,
        help="Redis connections a web process uses for commands, per event loop and for "
        "its sync views' threads (plus one subscriber), however many streams are open. "
        "Workers are not bounded: each pool thread needs one while it records.",
    ),
    "KEY_PREFIX": Setting(types=(str,), default="tasktrail", help="Prefix of every Redis key."),
    "CLUSTER_SHARDS": Setting(
        types=(int,),
        default=16,
        help="On a Redis Cluster (redis+cluster://): how many hash-tagged shards hold the "
        "structures runs share (dirty set, waiting set, firehose, counters), so that a "
        "transition stays one script in one slot while the load spreads over the masters. "
        "Ignored on a single Redis. Changing it moves runs to other shards: change it "
        "only with no run in flight.",
    ),
    "EXCLUDE_TASKS": Setting(
        types=(list, tuple),
        default=(
            "celery.accumulate",
            "celery.backend_cleanup",
            "celery.chain",
            "celery.chord",
            "celery.chord_unlock",
            "celery.group",
            "celery.ping",
            "tasktrail.evaluate_alerts",
        ),
        help="Task names (fnmatch patterns) that are not tracked. The default leaves out "
        "Celery's bookkeeping tasks and the alert evaluation (it runs every few seconds); "
        "a user's starmap, map and chunks are tracked.",
    ),
    "STREAM_MAXLEN": Setting(
        types=(int,), default=10_000, help="Events kept in each run's stream."
    ),
    "SUBJECT_STREAM_MAXLEN": Setting(
        types=(int,), default=10_000, help="Events kept in each subject's stream."
    ),
    "FIREHOSE_MAXLEN": Setting(
        types=(int,), default=100_000, help="Events kept in the dashboard firehose."
    ),
    "STREAM_TTL": Setting(
        types=(int,),
        default=3600,
        help="Seconds a finished run's stream and hot record stay in Redis (the database "
        "keeps the record; clients can resume a stream for this long).",
    ),
    "KEEPALIVE_INTERVAL": Setting(
        types=(int, float), default=15.0, help="Seconds between SSE keep-alive comments."
    ),
    "PROGRESS_INTERVAL": Setting(
        types=(int, float),
        default=0.005,
        help="Least seconds between two progress events of one run (coalescing window).",
    ),
    "FLUSH_INTERVAL": Setting(
        types=(int, float),
        default=0.5,
        help="Seconds between two database flushes of changed runs.",
    ),
    "FLUSH_DELAY": Setting(
        types=(int, float),
        default=0.5,
        help="Seconds an unfinished run's change waits before it is due for the database "
        "(a run that ends sooner is written once); an ended run is due at once.",
    ),
    "FLUSH_BATCH_SIZE": Setting(
        types=(int,), default=500, help="Most runs written to the database in one statement."
    ),
    "FLUSH_IN_WORKER": Setting(
        types=(bool,),
        default=True,
        help="Run the database flusher thread in every Celery worker's main process.",
    ),
    "HEARTBEAT_INTERVAL": Setting(
        types=(int, float), default=10.0, help="Seconds between two heartbeats of a worker."
    ),
    "LOST_AFTER": Setting(
        types=(int, float),
        default=60.0,
        help="Seconds without a heartbeat after which a worker's running runs count as lost.",
    ),
    "UNDELIVERED_AFTER": Setting(
        types=(int, float),
        default=120.0,
        help="Seconds a run may wait in a queue past its due time before the sweep asks the "
        "broker whether it still holds the message; one it does not hold (the publish "
        "failed, the queue was purged or deleted) is FAILED with reason never_delivered.",
    ),
    "TOKEN_MAX_AGE": Setting(
        types=(int,), default=3600, help="Seconds a signed per-run access token stays valid."
    ),
    "IDEMPOTENCY_TTL": Setting(
        types=(int,),
        default=7 * 24 * 3600,
        help="Seconds Redis remembers an idempotency key (the database keeps it too).",
    ),
    "MAX_RESULT_BYTES": Setting(
        types=(int,),
        default=256 * 1024,
        help="Largest JSON result stored; a larger one is replaced by a truncation marker.",
    ),
    "MAX_ARGUMENT_BYTES": Setting(
        types=(int,),
        default=64 * 1024,
        help="Largest stored arguments (JSON); larger ones are replaced by a truncation marker.",
    ),
    "MAX_FEED_BYTES": Setting(
        types=(int,), default=8 * 1024, help="Longest feed message; longer ones are truncated."
    ),
    "LIST_PAGE_SIZE": Setting(types=(int,), default=50, help="Runs per page of the list API."),
    "RETENTION": Setting(
        types=(dict,),
        default={"default": 30},
        help="Days finished runs are kept: {'default': days, 'task.name': days}; None: forever.",
    ),
    "PRUNE_INTERVAL": Setting(
        types=(int, float, type(None)),
        default=3600,
        help="Seconds between two automatic prunes by celery beat; None registers no schedule.",
    ),
    "REDACT_ARGUMENTS": Setting(
        types=(list, tuple),
        default=("password", "secret", "token", "api_key", "authorization", "card"),
        help="Argument names (substrings, any case) whose values are hidden before arguments "
        "and feed lines are stored.",
    ),
    "AUTHENTICATION_CLASSES": Setting(
        types=(list, tuple, type(None)),
        default=None,
        help="DRF-style authenticator classes (dotted paths) of the run endpoints. None: "
        "DRF's DEFAULT_AUTHENTICATION_CLASSES when rest_framework is installed, else "
        "Django's session; []: Django's session.",
    ),
    "METRICS_TOKEN": Setting(
        types=(str, type(None)),
        default=None,
        help="When set, /metrics requires 'Authorization: Bearer <token>' (or a staff session).",
    ),
    "TRACE_URL": Setting(
        types=(str, type(None)),
        default=None,
        help="Link from a run's dashboard page to its trace, an http(s) URL with "
        "{trace_id} (and optionally {span_id}), e.g. 'https://tempo.example/trace/{trace_id}'. "
        "None: no link (the trace id is still shown).",
    ),
    "ALERTS": Setting(
        types=(dict,),
        default={},
        help="Alert rules and channels: {'CHANNELS': {...}, 'RULES': {...}, 'INTERVAL': 30} "
        "(docs/alerts.md). Empty: no alerts.",
    ),
}


class TasktrailSettings:
    """Attribute access to ``settings.TASKTRAIL[...]`` with defaults."""

    def __getattr__(self, name: str) -> Any:
        if name not in SETTINGS:
            raise AttributeError(f"tasktrail has no setting {name!r}")
        return self.snapshot()[name]

    def snapshot(self) -> dict[str, Any]:
        """Every setting at once (hot paths read several per call). Rebuilt when
        ``TASKTRAIL`` is replaced, as ``override_settings`` and assignment do; a dict
        changed in place is not noticed."""
        user = getattr(django_settings, "TASKTRAIL", {}) or {}
        cached = self.__dict__.get("_snapshot")
        if cached is None or cached[0] is not user:
            values = {name: user.get(name, setting.default) for name, setting in SETTINGS.items()}
            cached = self.__dict__["_snapshot"] = (user, values)
        return cached[1]


settings = TasktrailSettings()


def reference_table() -> str:
    """The settings as the Markdown table in docs/settings.md (a test keeps them equal)."""
    rows = ["| Setting | Type | Default | What it is for |", "| --- | --- | --- | --- |"]
    for name, setting in SETTINGS.items():
        kinds = " or ".join("None" if t is type(None) else t.__name__ for t in setting.types)
        rows.append(f"| `{name}` | {kinds} | `{setting.default!r}` | {setting.help} |")
    return "\n".join(rows) + "\n"
