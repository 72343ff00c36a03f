"""The audit of ``scripts/celery_integration.py``: Celery referees tasktrail's record.

After the tasktrail pass, every run tasktrail recorded (a hot record in Redis or a
database row, after ``flusher.flush_all()``) is compared with the state Celery's stock
``RedisBackend`` reads for the same id from the same Redis database, and every id
Celery stored a state for, of a task tasktrail tracks, must have a record.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

# What a run's status must be once Celery reports the state (tasktrail's statuses).
SETTLED = {"SUCCESS": "SUCCESSFUL", "FAILURE": "FAILED", "REVOKED": "CANCELLED"}
UNFINISHED_STATES = {"RETRY": "RETRYING", "STARTED": "RUNNING", "RECEIVED": "READY"}
UNFINISHED = {"READY", "RUNNING", "RETRYING"}


def say(message: str = "") -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Finding:
    run_id: str
    task: str
    celery: str
    tasktrail: str
    row: str
    test: str
    detail: str


@dataclass
class Audit:
    audited: int = 0
    flushed: int = 0
    table: Counter[tuple[str, str]] = field(default_factory=Counter)
    unsettled: list[Finding] = field(default_factory=list)
    mismatched: list[Finding] = field(default_factory=list)
    unknown: list[Finding] = field(default_factory=list)
    row_disagrees: list[Finding] = field(default_factory=list)
    no_referee_unfinished: list[Finding] = field(default_factory=list)
    no_referee_finished: Counter[str] = field(default_factory=Counter)

    @property
    def failures(self) -> int:
        return (
            len(self.unsettled) + len(self.mismatched) + len(self.unknown) + len(self.row_disagrees)
        )


def setup_django(env: dict[str, str]) -> None:
    """Django in this process with the tasktrail pass's settings, its tables created."""
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def run(results_url: str, published: dict[str, str]) -> Audit:
    from celery import Celery
    from celery.backends.redis import RedisBackend

    from tasktrail import flusher, keys
    from tasktrail.connection import get_redis
    from tasktrail.models import TaskRun
    from tasktrail.records import decode_hash
    from tasktrail.runs import find_run
    from tasktrail.tracked import is_tracked

    report = Audit(flushed=flusher.flush_all(timeout=60.0))
    client = get_redis()
    before, _, after = keys.run_hash("*").partition("*")
    hot: dict[str, dict[str, str]] = {}
    for key in client.scan_iter(match=keys.run_hash("*"), count=1000):
        name = key.decode()
        if client.type(key) != b"hash":
            continue
        record = decode_hash(client.hgetall(key))
        hot[record.get("id") or name[len(before) : len(name) - len(after)]] = record
    rows = {row.id: row for row in TaskRun.objects.all()}

    app = Celery("celery-integration-audit", set_as_current=False)
    stock = RedisBackend(app=app, url=results_url)
    celery_ids = {
        key.decode().removeprefix("celery-task-meta-")
        for key in stock.client.scan_iter(match="celery-task-meta-*", count=1000)
    }

    def test_of(run_id: str) -> str:
        if run_id in published:
            return published[run_id]
        row, record = rows.get(run_id), hot.get(run_id, {})
        for parent in (
            record.get("root"),
            record.get("parent"),
            getattr(row, "root_id", ""),
            getattr(row, "parent_id", ""),
        ):
            if parent and parent in published:
                return published[parent]
        return "?"

    for run_id in sorted(set(hot) | set(rows) | celery_ids):
        meta = stock.get_task_meta(run_id)
        state = str(meta["status"])
        run = find_run(run_id) if (run_id in hot or run_id in rows) else None
        row = rows.get(run_id)
        task = str(meta.get("name") or (run.task if run else "") or "")
        status = str(run.status) if run else "no record"
        row_status = str(row.status) if row else "no row"
        error = ""
        if run is not None and run.error is not None:
            error = f"{run.error.type}: {run.error.message}"[:120]
        elif state in ("FAILURE", "REVOKED", "RETRY"):
            error = f"celery: {meta.get('result')!r}"[:120]
        finding = Finding(run_id, task, state, status, row_status, test_of(run_id), error)
        if run is None:
            if task and is_tracked(task) and state != "PENDING":
                report.unknown.append(finding)
                report.table[(state, status)] += 1
            continue
        report.audited += 1
        report.table[(state, status)] += 1
        if row_status != status:
            report.row_disagrees.append(finding)
        if state in SETTLED:
            if status in UNFINISHED:
                report.unsettled.append(finding)
            elif status != SETTLED[state]:
                report.mismatched.append(finding)
        elif state == "PENDING":
            if status in UNFINISHED:
                report.no_referee_unfinished.append(finding)
            else:  # ignore_result, forget(), a message Celery dropped: Celery cannot say
                reason = run.error.reason if run.error is not None else ""
                report.no_referee_finished[f"{task} {status} {reason}".strip()] += 1
        elif status != UNFINISHED_STATES.get(state, "RUNNING"):
            report.mismatched.append(finding)  # a retry or a custom state (PROGRESS...)
    return report


def show(report: Audit) -> None:
    statuses = sorted({status for _, status in report.table})
    states = sorted({state for state, _ in report.table})
    corner = "Celery \\ tasktrail"
    width = max([len(corner), *(len(s) for s in states)])
    say("\n" + f"{corner:<{width}}  " + "  ".join(f"{s:>10}" for s in statuses))
    for state in states:
        cells = "  ".join(f"{report.table[(state, s)] or '':>10}" for s in statuses)
        say(f"{state:<{width}}  {cells}")
    say(f"\nruns audited: {report.audited} (flush_all wrote {report.flushed} rows)")
    groups = [
        ("left READY/RUNNING/RETRYING that Celery has settled", report.unsettled),
        ("status differs from Celery's state", report.mismatched),
        ("Celery stored a state for a tracked task tasktrail never recorded", report.unknown),
        ("database row differs from the run after flush_all", report.row_disagrees),
        (
            "unfinished while Celery has no state for the id (PENDING: not judged)",
            report.no_referee_unfinished,
        ),
    ]
    for title, findings in groups:
        say(f"{title}: {len(findings)}")
        for item in findings[:25]:
            say(
                f"  {item.run_id}  {item.task}  celery={item.celery}  tasktrail={item.tasktrail}"
                f"  row={item.row}  test={item.test}  {item.detail}"
            )
        if len(findings) > 25:
            say(f"  ... and {len(findings) - 25} more")
    finished = report.no_referee_finished
    say(f"finished while Celery has no state for the id (not judged): {finished.total()}")
    for what, count in finished.most_common():
        say(f"  {count:>4}  {what}")
