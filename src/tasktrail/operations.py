"""What operators do, shared by the dashboard and the ``tasktrail`` command.

- :class:`RunFilter`: the filters of the runs and failures screens and of
  ``tasktrail list``, turned into one indexed queryset;
- bulk cancel and retry of everything a filter matches, through
  :mod:`tasktrail.actions` (so each run's action is audited), at most
  :data:`BULK_LIMIT` runs per request;
- :func:`healthcheck`: one line per dependency;
- :func:`redact`: arguments with secrets hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.contrib.auth import get_user_model
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import actions
from .exceptions import RunNotFound, TasktrailError
from .status import FINISHED, Status

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import TaskRun

BULK_LIMIT = 1000
SEARCH_WINDOW = timedelta(days=1)
BulkAction = Literal["retry", "cancel"]
BULK_STATUSES: dict[str, tuple[Status, ...]] = {
    "retry": (Status.FAILED,),
    "cancel": (Status.READY, Status.RUNNING, Status.RETRYING),
}
_SPAN = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class BadFilter(ValueError):
    """A filter value that cannot be used; the message says what is allowed."""


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """``"90m"``, ``"24h"``, ``"7d"`` (that long ago) or an ISO 8601 date and time."""
    text = text.strip()
    span = _SPAN.match(text)
    if span:
        return (now or timezone.now()) - timedelta(**{_UNITS[span[2]]: int(span[1])})
    moment = parse_datetime(text)
    if moment is None:
        raise BadFilter(f"{text!r} is not a time: use 30m, 24h, 7d or 2025-01-31T12:00.")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


@dataclass(frozen=True, kw_only=True)
class RunFilter:
    status: str = ""
    task: str = ""
    queue: str = ""
    owner: str = ""
    since: str = ""
    until: str = ""
    search: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunFilter:
        names = [f.name for f in fields(cls)]
        values = {name: str(params.get(name) or "").strip()[:200] for name in names}
        found = cls(**values)
        found.validate()
        return found

    def validate(self) -> None:
        if self.status and self.status not in Status.values:
            raise BadFilter(f"Unknown status {self.status!r}; use one of {', '.join(Status)}.")
        for moment in (self.since, self.until):
            if moment:
                parse_moment(moment)

    def with_status(self, status: str) -> RunFilter:
        return replace(self, status=status)

    def as_params(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    @property
    def is_empty(self) -> bool:
        return not self.as_params()

    def queryset(self) -> QuerySet[TaskRun]:
        """The matching runs; a search without ``since`` looks at the last day only."""
        from .models import TaskRun

        rows = TaskRun.objects.all()
        if self.status:
            rows = rows.filter(status=self.status)
        if self.task:
            rows = rows.filter(task=self.task)
        if self.queue:
            rows = rows.filter(queue=self.queue)
        if self.owner:
            rows = rows.filter(owner_id=_owner_pk(self.owner))
        since = parse_moment(self.since) if self.since else None
        if self.search and since is None:
            since = timezone.now() - SEARCH_WINDOW
        if since is not None:
            rows = rows.filter(enqueued_at__gte=since)
        if self.until:
            rows = rows.filter(enqueued_at__lt=parse_moment(self.until))
        if self.search:
            rows = rows.alias(
                args_text=Cast("args", TextField()), kwargs_text=Cast("kwargs", TextField())
            ).filter(
                Q(args_text__icontains=self.search)
                | Q(kwargs_text__icontains=self.search)
                | Q(pk=self.search)
            )
        return rows


def _owner_pk(owner: str) -> Any:
    """A username, or a primary key given as ``#42`` or a bare number."""
    user_model = get_user_model()
    if owner.startswith("#"):
        return owner[1:]
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: owner}).first()
    if user is not None:
        return user.pk
    return owner if owner.isdigit() else -1


@dataclass(kw_only=True)
class BulkOutcome:
    action: str
    done: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    new_runs: list[str] = field(default_factory=list)
    skipped_already_retried: int = 0
    stopped: str = ""  # why the rest was not tried (the broker or Redis did not answer)


def bulk_queryset(run_filter: RunFilter, action: BulkAction) -> QuerySet[TaskRun]:
    rows = run_filter.queryset()
    allowed = BULK_STATUSES[action]
    if run_filter.status:
        return rows if run_filter.status in allowed else rows.none()
    return rows.filter(status__in=allowed)


def bulk_count(run_filter: RunFilter, action: BulkAction, limit: int = BULK_LIMIT) -> int:
    """How many runs a bulk action would act on now (at most ``limit``)."""
    return int(bulk_queryset(run_filter, action).values("pk")[:limit].count())


def bulk_apply(
    run_filter: RunFilter,
    action: BulkAction,
    *,
    actor: Any,
    address: str | None,
    limit: int = BULK_LIMIT,
) -> BulkOutcome:
    """Cancel or retry (each through :mod:`tasktrail.actions`, audited) up to ``limit``
    matching runs, newest first. A bulk retry skips runs already retried once."""
    ids = list(
        bulk_queryset(run_filter, action)
        .order_by("-enqueued_at", "-id")
        .values_list("pk", flat=True)[:limit]
    )
    if action == "retry":
        return retry_each(ids, actor=actor, address=address)
    outcome = BulkOutcome(action=action)
    for run_id in ids:
        try:
            actions.cancel(run_id, actor=actor, address=address)
            outcome.done.append(run_id)
        except (actions.ActionRefused, RunNotFound) as exc:
            outcome.refused[run_id] = str(exc)
    return outcome


def retry_each(ids: list[str], *, actor: Any, address: str | None) -> BulkOutcome:
    """Retry these runs one by one (each through :func:`tasktrail.actions.retry`, audited),
    skipping runs already retried once; a run refused is noted and the next one tried."""
    from .models import AuditEntry

    outcome = BulkOutcome(action="retry")
    retried = set(
        AuditEntry.objects.filter(run_id__in=ids, action="retry").values_list("run_id", flat=True)
    )
    outcome.skipped_already_retried = len(retried)
    for run_id in ids:
        if run_id in retried:
            continue
        try:
            new = actions.retry(run_id, actor=actor, address=address)
        except TasktrailError as exc:  # refused, gone, or published but not recorded
            outcome.refused[run_id] = str(exc)
            continue
        except actions.UNREACHABLE as exc:  # the next one would fail the same way
            outcome.stopped = actions.unreachable_message(exc)
            break
        outcome.new_runs.append(new.id)
        outcome.done.append(run_id)
    return outcome


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name:<9} {'ok' if self.ok else 'DOWN':<4}  {self.detail}"


def _check(name: str, probe: Any) -> Check:
    try:
        return Check(name=name, ok=True, detail=str(probe()))
    except Exception as exc:
        return Check(name=name, ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])


def _database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return f"{connection.vendor} {connection.settings_dict.get('NAME')}"


def _redis() -> str:
    from .connection import get_redis, redis_location

    get_redis().ping()
    return redis_location()


def _broker() -> str:
    from celery import current_app

    with current_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
        return str(connection.as_uri())


def _workers() -> str:
    from .workers import list_workers

    workers = list_workers()
    online = [w.hostname for w in workers if w.online]
    if not online:
        raise RuntimeError(f"no worker online ({len(workers)} seen recently)")
    return f"{len(online)} online: {', '.join(online)}"


def healthcheck() -> list[Check]:
    """Database, Redis, broker and workers: one :class:`Check` each."""
    return [
        _check("database", _database),
        _check("redis", _redis),
        _check("broker", _broker),
        _check("workers", _workers),
    ]


def is_finished(status: str) -> bool:
    return status in FINISHED
