"""A run's workflow family (chain, group, chord, parent and children) with the times
the timeline draws: queued, started, last attempt, finished.

Celery links a family loosely: steps of a chain and children of a task share
``root_id``; the members of a group share ``group_id``; a chord's header published
from outside any task has no common root (each member is its own root) and its
callback is published by the header member that finished last, so it carries that
member's id as its root. So the family is a closure: runs whose root is the run's
root or any member's id, or whose group is a member's group, grown a few rounds over
the ``root_id`` and ``group_id`` indexes.

Members reach the database about a second after they change (the flusher), and the
flusher's dirty set names every run changed since it was last saved. While that set
is small, the runs in it that are not saved at all join the family by the links in
their hot records, and saved members in it are refreshed from theirs; a member out
of it is saved as it is. (When the set is large, every unfinished member is
refreshed and new members show once saved.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import redis
from django.db import connections, router
from django.db.models import F, FloatField, Func, Q
from django.utils import timezone

from . import keys
from .connection import get_redis
from .runs import Run
from .status import FINISHED

logger = logging.getLogger("tasktrail")

ROUNDS = 4  # chain/group -> chord callback -> its children -> theirs
DIRTY_SCAN = 2000  # beyond this many unsaved runs, new members wait for the flusher

_COLUMNS = (
    "id", "task", "status", "attempts", "queue", "worker", "enqueued_at", "started_at",
    "last_attempted_at", "finished_at", "next_attempt_at", "parent_id", "root_id",
    "group_id", "retry_of",
)  # fmt: skip
_HASH = (
    "task", "status", "attempts", "queue", "worker", "enqueued_at", "started_at",
    "last_attempted_at", "finished_at", "next_attempt_at", "parent", "root", "group",
    "retry_of",
)  # fmt: skip
# What transitions change (runs._LIVE_FIELDS): a saved member's news.
_LIVE = ("status", "attempts", "worker", "started_at", "last_attempted_at", "finished_at",
         "next_attempt_at")  # fmt: skip
_LINKS = ("root", "group", "parent")
_TIMES = ("enqueued_at", "started_at", "last_attempted_at", "finished_at", "next_attempt_at")


def _epoch_of(column: F) -> Func:
    return Func(
        column, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", output_field=FloatField()
    )


class Member(NamedTuple):
    """One run of a family; times are epoch seconds (``None`` until they happen).
    A named tuple: a family has a thousand of them, built straight from result rows."""

    id: str
    task: str
    status: str = "READY"
    attempts: int = 0
    queue: str = ""
    worker: str = ""
    enqueued_at: float | None = None
    started_at: float | None = None
    last_attempted_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None
    parent_id: str = ""
    root_id: str = ""
    group_id: str = ""
    retry_of: str = ""

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def sort_key(self) -> tuple[bool, float, float, str]:
        """By start; runs not started yet after them, by enqueue time (so a row keeps
        its place among the started ones once it starts)."""
        inf = float("inf")
        start = self.started_at or self.enqueued_at or inf
        return (self.started_at is None, start, self.enqueued_at or inf, self.id)


@dataclass(frozen=True, kw_only=True)
class Family:
    members: list[Member]  # sorted by start, at most the cap
    total: int  # members found; more than ``len(members)`` when capped
    # "" when members only in Redis were looked for; else why they show once saved.
    unsaved_note: str = ""


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if timezone.is_naive(value):  # USE_TZ = False: the database holds local time
        value = timezone.make_aware(value)
    return value.timestamp()


def _members(query: Q, limit: int) -> Iterator[Member]:
    """The runs ``query`` matches, at most ``limit``. PostgreSQL hands the times over as
    epoch numbers: parsing a thousand rows' timestamps with their zone in Python took
    longer than the query."""
    from .models import TaskRun

    rows = TaskRun.objects.filter(query)
    if connections[router.db_for_read(TaskRun)].vendor == "postgresql":
        epochs = {f"{name}_epoch": _epoch_of(F(name)) for name in _TIMES}
        names = [f"{n}_epoch" if n in _TIMES else n for n in _COLUMNS]
        for row in rows.annotate(**epochs).values_list(*names)[:limit]:
            yield Member._make(row)
        return
    times = [i for i, name in enumerate(_COLUMNS) if name in _TIMES]
    for row in rows.values_list(*_COLUMNS)[:limit]:
        values = list(row)
        for i in times:
            values[i] = _epoch(values[i])
        yield Member._make(values)


def _from_run(run: Run) -> Member:
    return Member(
        id=run.id, task=run.task, status=str(run.status), attempts=run.attempts,
        queue=run.queue, worker=run.worker, enqueued_at=_epoch(run.enqueued_at),
        started_at=_epoch(run.started_at), last_attempted_at=_epoch(run.last_attempted_at),
        finished_at=_epoch(run.finished_at), next_attempt_at=_epoch(run.next_attempt_at),
        parent_id=run.parent_id, root_id=run.root_id, group_id=run.group_id,
        retry_of=run.retry_of,
    )  # fmt: skip


def _hot_fields(raw: dict[str, str]) -> dict[str, Any]:
    """A hot record's fields under Member's names (only those the record has)."""
    renamed = {"parent": "parent_id", "root": "root_id", "group": "group_id"}
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        key = renamed.get(name, name)
        if key in _TIMES:
            fields[key] = float(value) if value else None
        elif key == "attempts":
            fields[key] = int(value or 0)
        else:
            fields[key] = value
    return fields


def _discover(run: Run, cap: int) -> tuple[dict[str, Member], Q]:
    """Members in the database, grown round by round; and the filter that found them."""
    found: dict[str, Member] = {}
    roots = {run.root_id or run.id, run.id}
    groups = {run.group_id} - {""}
    asked_roots: set[str] = set()
    asked_groups: set[str] = set()
    for _ in range(ROUNDS):
        roots -= asked_roots
        groups -= asked_groups
        if not roots and not groups:
            break
        asked_roots |= roots
        asked_groups |= groups
        query = Q(root_id__in=sorted(roots)) | Q(group_id__in=sorted(groups))
        new = []
        for member in _members(query, cap + 1):
            if member.id not in found:
                found[member.id] = member
                new.append(member)
        if len(found) > cap:
            break
        # A member is the root of its children: only one that is its own root (a member
        # of a group published outside any task) can have children not found already.
        roots = {m.id for m in new if m.root_id in ("", m.id)} | {m.root_id for m in new} - {""}
        groups = {m.group_id for m in new if m.group_id}
    whole = Q(root_id__in=sorted(asked_roots)) | Q(group_id__in=sorted(asked_groups))
    return found, whole


def _read_hot(client: redis.Redis, asks: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, str]]:
    """For each (run id, hash fields), the fields its hot record has, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for run_id, fields in asks:
        pipe.hmget(keys.run_hash(run_id), fields)
    return [
        {name: v.decode() for name, v in zip(fields, values, strict=True) if v is not None}
        for (_, fields), values in zip(asks, pipe.execute(), strict=True)
    ]


def _joins(member: Member, ids: set[str], groups: set[str]) -> bool:
    return bool(
        member.root_id in ids
        or member.parent_id in ids
        or (member.group_id and member.group_id in groups)
    )


def _joining(
    client: redis.Redis, found: dict[str, Member], unsaved: list[str], cap: int
) -> list[str]:
    """Which unsaved runs belong to the family, by the links in their hot records (read
    first on their own: most of a busy dirty set is other work)."""
    links = _read_hot(client, [(i, _LINKS) for i in unsaved])
    candidates = {
        run_id: Member(id=run_id, task="", **_hot_fields(raw))
        for run_id, raw in zip(unsaved, links, strict=True)
        if raw  # a record without links (rebuilt after Redis lost it) has none to follow
    }
    ids = set(found) | {m.root_id for m in found.values() if m.root_id}
    groups = {m.group_id for m in found.values() if m.group_id}
    joined: list[str] = []
    grew = True
    while grew and len(found) + len(joined) <= cap:
        joining = [m for m in candidates.values() if _joins(m, ids, groups)]
        for member in joining:
            del candidates[member.id]
            joined.append(member.id)
            ids |= {member.id, member.root_id} - {""}
            groups |= {member.group_id} - {""}
        grew = bool(joining)
    return joined


def _changed(client: redis.Redis) -> tuple[set[str], str]:
    """The runs in the flusher's dirty set, read before the database is asked: the
    flusher takes a run out of the set only after its row is written, so a member saved
    while the timeline reads is in the set or in the rows, never in neither. Also a note
    when the set is too large to look through."""
    pipe = client.pipeline(transaction=False)
    for base in keys.bases():  # one dirty set per shard on a cluster
        pipe.zrange(keys.dirty_set(base), 0, DIRTY_SCAN)
    dirty: list[bytes] = [i for found in pipe.execute() for i in found]
    if len(dirty) > DIRTY_SCAN:
        return set(), "Many runs are waiting to be saved: new members show once saved."
    return {d.decode() for d in dirty}, ""


def _with_redis(
    client: redis.Redis, found: dict[str, Member], changed: set[str], crowded: bool, cap: int
) -> None:
    """Refresh unfinished members from their hot records and add the members only in
    Redis (``changed``: in the dirty set when it was read; ``crowded``: it was too large
    to read, so every unfinished member is refreshed)."""
    unsaved = _joining(client, found, [i for i in changed if i not in found], cap)
    # A saved run out of the dirty set is saved as it is now; one in it has news, but
    # its links and task stay: only what a transition changes is read.
    fresh = [i for i, m in found.items() if not m.is_finished and (crowded or i in changed)]
    records = _read_hot(client, [(i, _LIVE) for i in fresh] + [(i, _HASH) for i in unsaved])
    for run_id, raw in zip(fresh, records, strict=False):
        if raw:
            found[run_id] = found[run_id]._replace(**_hot_fields(raw))
    for run_id, raw in zip(unsaved, records[len(fresh) :], strict=True):
        if "task" in raw:  # else it expired meanwhile
            found[run_id] = Member(id=run_id, **_hot_fields(raw))


def find_family(run: Run, cap: int = 2000) -> Family:
    """``run`` and the runs of its workflow, sorted by start, at most ``cap`` of them."""
    from .models import TaskRun

    client = get_redis()
    unreachable = "Redis is unreachable: the timeline shows what the database holds."
    try:
        changed, note = _changed(client)
    except redis.RedisError as exc:
        logger.warning("tasktrail: timeline without Redis: %s", exc)
        changed, note = set(), unreachable
    found, whole = _discover(run, cap)
    found.setdefault(run.id, _from_run(run))
    if note != unreachable:
        try:
            _with_redis(client, found, changed, bool(note), cap)
        except redis.RedisError as exc:
            logger.warning("tasktrail: timeline without Redis: %s", exc)
            note = unreachable
    members = sorted(found.values(), key=Member.sort_key)
    total = len(members)
    if total > cap:
        total = max(total, TaskRun.objects.filter(whole).count())
    return Family(members=members[:cap], total=total, unsaved_note=note)
