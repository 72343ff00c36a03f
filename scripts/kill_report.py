"""What the kill trial observed, checked and printed: one :class:`Run` per SIGKILLed
head, its checks against the case's expectations (``scripts/kill_trial.py``), and the
table of cases.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scripts.kill_trial import Case


@dataclass
class Run:
    case: Case
    key: str
    head_id: str
    next_key: str = ""
    next_id: str = ""
    node: str = ""
    killed_at: float = 0.0
    # Observed at the end:
    runs: int = 0
    next_runs: int = 0
    status: str = ""  # hot record
    row_status: str = ""  # database row after flush_all()
    result: Any = None
    error_type: str = ""
    celery_state: str = ""
    next_status: str = ""
    next_row_status: str = ""
    next_celery_state: str = ""
    problems: list[str] = field(default_factory=list)


def status_of(run_id: str) -> str:
    from tasktrail.runs import find_run

    run = find_run(run_id)
    return "" if run is None else str(run.status)


def observe(runs: list[Run], *, control: bool) -> None:
    """Fill in what happened to every run and what is wrong with it."""
    from celery.result import AsyncResult

    from scripts.trial_tasks import executions
    from tasktrail.flusher import flush_all
    from tasktrail.models import TaskRun
    from tasktrail.runs import find_run

    flush_all()
    ids = [r.head_id for r in runs] + [r.next_id for r in runs if r.next_id]
    rows = dict(TaskRun.objects.filter(pk__in=ids).values_list("id", "status"))
    heads = executions([r.key for r in runs])
    for run, count in zip(runs, heads, strict=True):
        run.runs = count
        run.next_runs = executions([run.next_key])[0] if run.next_key else 0
        record = find_run(run.head_id)
        if record is not None:
            run.status, run.result = str(record.status), record.result
            run.error_type = record.error.type if record.error else ""
        run.row_status = str(rows.get(run.head_id, ""))
        run.celery_state = AsyncResult(run.head_id).state
        if run.next_id:
            run.next_status = status_of(run.next_id)
            run.next_row_status = str(rows.get(run.next_id, ""))
            run.next_celery_state = AsyncResult(run.next_id).state
        case, problems = run.case, run.problems
        if run.runs != case.expected_runs:
            problems.append(f"head ran {run.runs}x, Celery alone runs it {case.expected_runs}x")
        if run.next_id and run.next_runs != case.expected_next:
            problems.append(f"next step ran {run.next_runs}x, expected {case.expected_next}x")
        if control:
            continue
        seen = {"head": run.status, "head row": run.row_status}
        seen |= {"next": run.next_status, "next row": run.next_row_status}
        problems += [f"{what} left RUNNING" for what, s in seen.items() if s == "RUNNING"]
        if run.status != case.expected_status:
            problems.append(f"head {run.status or 'unrecorded'}, expected {case.expected_status}")
        elif case.expected_status == "SUCCESSFUL" and run.result != 2:
            problems.append(f"head result {run.result!r}, expected 2 (the second execution's)")
        elif case.expected_status == "FAILED" and run.error_type != case.expected_error:
            problems.append(f"head error {run.error_type!r}, expected {case.expected_error}")
        if run.row_status != run.status:
            problems.append(f"row {run.row_status or 'missing'} != hot record {run.status}")
        if run.next_status and run.next_row_status != run.next_status:
            problems.append(f"next row {run.next_row_status or 'missing'} != hot {run.next_status}")
        if case.expected_next and run.next_status != "SUCCESSFUL":
            problems.append(f"next step {run.next_status or 'unrecorded'}, expected SUCCESSFUL")


def distribution(values: list[int]) -> str:
    """``[2, 2, 1]`` -> ``"1x1 2x2"``; one value -> that value."""
    counts = Counter(values)
    if len(counts) == 1:
        return str(values[0])
    return " ".join(f"{value}x{n}" for value, n in sorted(counts.items()))


def summarize(runs: list[Run], cases: list[Case]) -> dict[str, dict[str, Any]]:
    """Per case (in the order of ``cases``): runs, executions, statuses, RUNNING left."""
    summary: dict[str, dict[str, Any]] = {}
    for case in cases:
        mine = [r for r in runs if r.case == case]
        if not mine:
            continue
        summary[case.name] = {
            "runs": len(mine),
            "expected": case.expected_runs,
            "executions": [r.runs for r in mine],
            "expected_next": case.expected_next if case.chained else None,
            "next_executions": [r.next_runs for r in mine] if case.chained else [],
            "statuses": dict(Counter(r.status or "-" for r in mine)),
            "celery_states": dict(Counter(r.celery_state for r in mine)),
            "next_statuses": dict(Counter(r.next_status or "-" for r in mine)),
            "running_left": sum(
                s == "RUNNING"
                for r in mine
                for s in (r.status, r.row_status, r.next_status, r.next_row_status)
            ),
            "problems": sum(bool(r.problems) for r in mine),
        }
    return summary


def print_table(
    summary: dict[str, dict[str, Any]], control: dict[str, Any] | None, *, alone: bool
) -> None:
    """One line per case: executions expected, measured with Celery alone and observed;
    the next step's; records left RUNNING; the head's final status in tasktrail's hot
    record and Celery's state for it (``AsyncResult``). In a control run (``alone``)
    tasktrail's records are not under test (its settler is off): only Celery's state."""
    head = (
        f"{'case':<20} {'runs':>4} {'expect':>6} {'Celery alone':>12} {'observed':>8}  "
        f"{'next exp/obs':>12}  {'RUNNING':>7}  {'tasktrail status':<16} "
        f"{'AsyncResult':<16} ok"
    )
    print(head)
    print("-" * len(head))
    for name, row in summary.items():
        measured = "-"
        if control and name in control:
            measured = distribution(control[name]["executions"])
        nxt = "-"
        if row["expected_next"] is not None:
            nxt = f"{row['expected_next']}/{distribution(row['next_executions'])}"
        statuses = "-" if alone else counts(row["statuses"])
        running = "-" if alone else str(row["running_left"])
        ok = "yes" if not row["problems"] else f"NO ({row['problems']})"
        print(f"{name:<20} {row['runs']:>4} {row['expected']:>6} {measured:>12} "
              f"{distribution(row['executions']):>8}  {nxt:>12}  {running:>7}  "
              f"{statuses:<16} {counts(row['celery_states']):<16} {ok}")  # fmt: skip


def counts(values: dict[str, int]) -> str:
    """``{"FAILED": 7}`` -> ``"FAILED 7"``; several values, most frequent first."""
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items(), key=lambda kv: -kv[1]))
