"""Lost-worker trial: SIGKILL runs mid-task and check that every task body ran exactly
as many times as Celery alone would run it, that no run is left RUNNING and that
chains go on.

    uv run python scripts/kill_trial.py --broker redis --kills 108
    uv run python scripts/kill_trial.py --broker amqp --kills 108
    uv run python scripts/kill_trial.py --broker redis --kills 16 --no-control   # quick

Every killed run is the head of a run (alone, or the first step of a two-step chain)
whose body counts its executions in Redis and holds its first execution until it is
killed. Two ways to lose it:

- **pool**: one prefork child is SIGKILLed, its node lives on (OOM killer, segfault).
  The node's main process sees the child die and Celery decides: this is Celery's own
  business, and tasktrail records what Celery stores.
- **node**: the node's whole process group is SIGKILLed (a machine gone). Nobody
  reports anything; tasktrail's settler on a surviving node (the "survivor", which
  starts consuming the dead node's queue through Celery's remote control) settles the
  run after ``LOST_AFTER`` seconds.

How many times Celery alone runs the head (the figure the trial expects); the next
step of a chain runs once if the head finally succeeds, never otherwise:

=========================== ===== =========================================================
case                        runs  why
=========================== ===== =========================================================
pool, early ack             1     acknowledged on receipt; Celery stores FAILURE
                                  ``WorkerLostError`` (and fails the chain's next step)
pool, acks_late             1     ``acks_on_failure_or_timeout``: acknowledged and FAILURE
                                  ``WorkerLostError``, never redelivered
pool, acks_late +           2     Celery rejects with requeue: the same message runs
reject_on_worker_lost             again (and the chain goes on)
pool, retry_on_worker_lost  2     Celery publishes a retry (countdown 0) with the chain
node, early ack             1     acknowledged on receipt: no broker gives it back;
                                  Celery alone reports nothing for ever, tasktrail FAILS it
                                  ``tasktrail.exceptions.WorkerLost`` (reason "lost")
node, acks_late             2     unacknowledged: on Redis kombu restores the message after
                                  the visibility timeout (an hour by default), on RabbitMQ
                                  the broker redelivers it when the connection drops; the
                                  run goes on from the original message, chain included
node, acks_late +           2     the same: reject_on_worker_lost needs a living main
reject_on_worker_lost             process, the broker's redelivery does not
node, retry_on_worker_lost  1     the retry needs a living main process; acknowledged on
                                  receipt, so nothing gives it back: FAILED ``WorkerLost``
=========================== ===== =========================================================

tasktrail must match these figures: on Redis its settler restores the unacknowledged
message once with kombu's own ``restore_by_tag`` (at ``LOST_AFTER`` instead of the
visibility timeout), on RabbitMQ it lets the broker redeliver, and it never publishes
a copy. Each figure is also *measured*: unless ``--no-control``, the trial first runs
every case with Celery alone (Celery's Redis result backend, tasktrail's settler off,
and on Redis a 12 s visibility timeout so kombu's restore happens within the trial)
and shows the counts in the "Celery alone" column. An expectation that disagrees with
that measurement fails the trial too.

Checked per run: head and next-step executions (again after a grace period, and no
message left in the broker that would run later), no record RUNNING (hot record and
database row after ``flush_all()``), the head's final status (SUCCESSFUL with the
second execution's result, or FAILED with ``WorkerLostError`` / ``WorkerLost``), and
database row equal to the hot record. Prints a table; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import trial_harness as harness
from scripts.kill_report import Run, observe, print_table, status_of, summarize

HOLD = 600.0  # a head's first execution sleeps this long: it is always killed first
KINDS = ("early", "late", "requeue", "retry")
LOST_ERRORS = {
    "pool": "billiard.exceptions.WorkerLostError",
    "node": "tasktrail.exceptions.WorkerLost",
}
SURVIVOR_CONCURRENCY = 8
VICTIM_CONCURRENCY = 8
VICTIMS_PER_ROUND = 3
CONTROL_VISIBILITY = 12.0


@dataclass(frozen=True)
class Case:
    loss: str  # "pool" or "node"
    kind: str  # one of KINDS
    chained: bool

    @property
    def name(self) -> str:
        return f"{self.loss}/{self.kind}{' +chain' if self.chained else ''}"

    @property
    def expected_runs(self) -> int:
        """How many times Celery alone runs the head (see the module's table)."""
        if self.loss == "pool":
            return 2 if self.kind in ("requeue", "retry") else 1
        return 2 if self.kind in ("late", "requeue") else 1

    @property
    def expected_next(self) -> int:
        return int(self.chained and self.expected_runs == 2)

    @property
    def expected_status(self) -> str:
        return "SUCCESSFUL" if self.expected_runs == 2 else "FAILED"

    @property
    def expected_error(self) -> str:
        """The error a FAILED head records: Celery's for a pool child, tasktrail's for a node."""
        return LOST_ERRORS[self.loss]


# Ordered so that the first 8 kills already cover every loss and option (no chains),
# the next 8 the same as chain heads.
CASES = [
    Case(loss, kind, chained)
    for chained in (False, True)
    for kind in KINDS
    for loss in ("pool", "node")
]


def task_of(kind: str) -> Any:
    from scripts import trial_tasks

    return {
        "early": trial_tasks.early,
        "late": trial_tasks.late,
        "requeue": trial_tasks.requeue,
        "retry": trial_tasks.retry,
    }[kind]


def publish(case: Case, queue: str, next_queue: str) -> Run:
    from scripts.trial_tasks import next_step

    key = uuid.uuid4().hex
    head = task_of(case.kind).s(key, HOLD).set(queue=queue)
    if not case.chained:
        return Run(case, key, head.apply_async().id)
    next_key = uuid.uuid4().hex
    result = (head | next_step.s(next_key).set(queue=next_queue)).apply_async()
    return Run(case, key, result.parent.id, next_key, result.id)


def wait_running(runs: list[Run], timeout: float = 90.0) -> bool:
    """Every head's first execution has started and told its pid."""
    from scripts.trial_tasks import executions, pids_key, redis_client

    def probe() -> bool:
        counts = executions([r.key for r in runs])
        pids: Any = redis_client().hmget(pids_key(), [r.key for r in runs])
        if not all(c == 1 for c in counts) or not all(pids):
            return False
        return all(status_of(r.head_id) == "RUNNING" for r in runs)

    return harness.wait_until(probe, timeout)


def settled(runs: list[Run], *, records: bool) -> bool:
    """Every head (and next step) ran as often as expected and, when ``records``,
    tasktrail's records say finished."""
    from scripts.trial_tasks import executions

    heads = executions([r.key for r in runs])
    nexts = executions([r.next_key for r in runs if r.next_key])
    if any(n < r.case.expected_runs for n, r in zip(heads, runs, strict=True)):
        return False
    chained = [r for r in runs if r.next_key]
    if any(n < r.case.expected_next for n, r in zip(nexts, chained, strict=True)):
        return False
    if not records:
        return True
    for run in runs:
        if status_of(run.head_id) not in ("SUCCESSFUL", "FAILED", "CANCELLED"):
            return False
        if run.case.expected_next and status_of(run.next_id) != "SUCCESSFUL":
            return False
    return True


def pid_of(run: Run) -> int:
    from scripts.trial_tasks import pids_key, redis_client

    raw: Any = redis_client().hget(pids_key(), run.key)
    return int(raw)


def kill_pool_children(
    survivor: harness.Worker, plan: list[Case], queues: dict[str, str], control: bool
) -> list[Run]:
    """Rounds of up to SURVIVOR_CONCURRENCY runs on the survivor: kill each run's child."""
    done: list[Run] = []
    for start in range(0, len(plan), SURVIVOR_CONCURRENCY):
        chunk = plan[start : start + SURVIVOR_CONCURRENCY]
        runs = [publish(case, queues["pool"], queues["next"]) for case in chunk]
        if not wait_running(runs):
            raise RuntimeError(f"pool round never ran; see {survivor.log}")
        pids = [pid_of(r) for r in runs]
        for run, pid in zip(runs, pids, strict=True):
            run.node, run.killed_at = survivor.hostname, time.time()
            os.kill(pid, signal.SIGKILL)
        if not harness.wait_until(partial(settled, runs, records=not control), 90):
            print(f"  pool round {start // SURVIVOR_CONCURRENCY + 1}: not settled in 90 s")
        done += runs
        print(f"  pool kills: {len(done)}/{len(plan)}", flush=True)
    return done


def kill_nodes(
    trial: harness.Trial,
    workers: harness.TrialWorkers,
    survivor: harness.Worker,
    plan: list[Case],
    queues: dict[str, str],
    control: bool,
) -> list[Run]:
    """Rounds of up to VICTIMS_PER_ROUND nodes, each holding up to VICTIM_CONCURRENCY
    runs; every node's process group is SIGKILLed, then the survivor consumes their
    queues (where the settler restores, or the broker redelivers, their messages)."""
    done: list[Run] = []
    per_round = VICTIM_CONCURRENCY * VICTIMS_PER_ROUND
    for start in range(0, len(plan), per_round):
        chunk = plan[start : start + per_round]
        size = VICTIM_CONCURRENCY
        groups = [chunk[i : i + size] for i in range(0, len(chunk), size)]
        victims = []
        for group in groups:
            queue = f"{trial.prefix}-victim-{uuid.uuid4().hex[:6]}"
            queues[queue] = queue
            victims.append(
                workers.start("victim", queues=[queue], concurrency=len(group), wait=False)
            )
        for victim in victims:
            workers.wait_ready(victim)
        runs: list[Run] = []
        for victim, group in zip(victims, groups, strict=True):
            for case in group:
                run = publish(case, victim.queues[0], queues["next"])
                run.node = victim.hostname
                runs.append(run)
        if not wait_running(runs):
            raise RuntimeError("node round never ran; see the victims' logs")
        for victim in victims:
            victim.kill_node()
        killed_at = time.time()
        for run in runs:
            run.killed_at = killed_at
        harness.consume(survivor, [v.queues[0] for v in victims])
        timeout = 90 + (CONTROL_VISIBILITY if control else 0)
        if not harness.wait_until(partial(settled, runs, records=not control), timeout):
            print(f"  node round {start // per_round + 1}: not settled in {timeout} s")
        harness.consume(survivor, [v.queues[0] for v in victims], start=False)
        done += runs
        print(f"  node kills: {len(done)}/{len(plan)} ({len(victims)} nodes)", flush=True)
    return done


def run_control(args: argparse.Namespace) -> tuple[dict[str, Any] | None, list[str]]:
    """The same cases with Celery alone, in a process of its own (its own settings)."""
    out = Path(f"/tmp/tasktrail-kill-control-{uuid.uuid4().hex[:8]}.json")
    command = [
        sys.executable, __file__, "--broker", args.broker, "--celery-alone",
        "--kills", str(len(CASES) * args.control_per_case), "--json", str(out),
        *(["--broker-keyprefix"] if args.broker_keyprefix else []),
    ]  # fmt: skip
    print(f"Celery alone (control): {len(CASES) * args.control_per_case} kills ...", flush=True)
    done = subprocess.run(command, check=False, timeout=900)
    try:
        data = json.loads(out.read_text())
        out.unlink()
    except (OSError, ValueError):
        return None, [f"the control run failed (exit {done.returncode}); no figures"]
    problems = [f"control: {p}" for p in data["general"]]
    for name, row in data["cases"].items():
        if set(row["executions"]) != {row["expected"]}:
            problems.append(
                f"{name}: Celery alone ran the head {row['executions']}, "
                f"the trial expects {row['expected']} (fix the expectation)"
            )
    return data["cases"], problems


def trial_phase(args: argparse.Namespace) -> tuple[list[Run], list[str], harness.Trial]:
    control = args.celery_alone
    trial = harness.configure(
        "kill-alone" if control else "kill",
        args.broker,
        result_backend=harness.STOCK_RESULT_BACKEND if control else None,
        visibility_timeout=CONTROL_VISIBILITY if control and args.broker == "redis" else None,
        lost_after=harness.SETTLER_OFF if control else harness.LOST_AFTER,
        broker_keyprefix=args.broker_keyprefix,
    )
    plan = [CASES[i % len(CASES)] for i in range(args.kills)]
    queues = {"pool": f"{trial.prefix}-pool", "next": f"{trial.prefix}-next"}
    workers = harness.TrialWorkers(trial)
    runs: list[Run] = []
    general: list[str] = []
    try:
        survivor = workers.start(
            "survivor", queues=[queues["pool"], queues["next"]], concurrency=SURVIVOR_CONCURRENCY
        )
        runs += kill_pool_children(survivor, [c for c in plan if c.loss == "pool"], queues, control)
        runs += kill_nodes(trial, workers, survivor, [c for c in plan if c.loss == "node"],
                           queues, control)  # fmt: skip
        # Grace: whatever would run again (a copy, a late restore) runs now.
        grace = args.grace
        if control and trial.redis_broker:
            last_kill = max((r.killed_at for r in runs), default=time.time())
            grace = max(grace, last_kill + CONTROL_VISIBILITY + 5 - time.time())
        time.sleep(max(grace, 0))
        workers.stop_all()  # warm shutdown: each node's flusher writes what it has
        left = harness.messages_left(trial, queues.values())
        if left:
            general.append(f"messages left in the broker (would run later): {left}")
        observe(runs, control=control)
    finally:
        ids = [r.head_id for r in runs] + [r.next_id for r in runs if r.next_id]
        harness.cleanup(trial, workers, queues.values(), ids)
    return runs, general, trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="redis", help="redis, amqp or a broker URL")
    parser.add_argument("--kills", type=int, default=108, help="SIGKILLed runs (default 108)")
    add = parser.add_argument
    add("--no-control", action="store_true", help="skip the Celery-alone control run")
    add("--control-per-case", type=int, default=1, help="control runs per case (default 1)")
    add("--grace", type=float, default=6.0, help="seconds to wait for extra executions (6)")
    add("--broker-keyprefix", action="store_true",
        help="Redis broker keys under a prefix (kombu's global_keyprefix)")  # fmt: skip
    parser.add_argument("--celery-alone", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    add("--keep-logs", action="store_true", help="keep the worker logs and database")
    args = parser.parse_args()
    harness.stop_on_sigterm()
    started = time.monotonic()

    control: dict[str, Any] | None = None
    problems: list[str] = []
    if not args.celery_alone and not args.no_control:
        control, problems = run_control(args)

    label = "Celery alone" if args.celery_alone else "tasktrail"
    print(f"{label}: {args.kills} kills on {args.broker} ...", flush=True)
    runs, general, trial = trial_phase(args)
    problems += general
    summary = summarize(runs, CASES)
    print()
    print(f"{label} on {trial.broker}: {len(runs)} SIGKILLed runs "
          f"({sum(r.case.loss == 'pool' for r in runs)} pool children, "
          f"{sum(r.case.loss == 'node' for r in runs)} on whole nodes, "
          f"{sum(r.case.chained for r in runs)} chain heads), "
          f"LOST_AFTER {trial.lost_after:g} s")  # fmt: skip
    print_table(summary, control, alone=args.celery_alone)
    for run in runs:
        for problem in run.problems:
            problems.append(
                f"{run.case.name} head {run.head_id}"
                + (f" next {run.next_id}" if run.next_id else "")
                + f" (node {run.node}): {problem}; record {run.status or '-'}, "
                f"row {run.row_status or '-'}, Celery {run.celery_state}, "
                f"error {run.error_type or '-'}, next {run.next_status or '-'}"
                f"/{run.next_celery_state or '-'}"
            )
    running_left = sum(r["running_left"] for r in summary.values())
    left = "not checked (settler off)" if args.celery_alone else str(running_left)
    elapsed = time.monotonic() - started
    print(f"\nRUNNING left: {left}; mismatches: {len(problems)}; wall time {elapsed:.0f} s")
    for problem in problems:
        print(f"  MISMATCH {problem}")
    if args.json:
        args.json.write_text(json.dumps({
            "broker": trial.broker, "kills": len(runs), "cases": summary, "problems": problems,
            "general": general,
            "runs": [{**asdict(r), "case": r.case.name} for r in runs], "wall_s": elapsed,
        }, default=str, indent=1))  # fmt: skip
    harness.finish(trial, failed=bool(problems) or args.keep_logs)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
