"""Skew trial: two workers whose clocks are 5 s ahead and 5 s behind (libfaketime)
process the retries of the same runs; at the end every database row must equal
Celery's final state.

    apt-get install -y libfaketime          # once (Debian/Ubuntu)
    uv run python scripts/skew_trial.py                 # 200 runs
    uv run python scripts/skew_trial.py --runs 20       # quick

Each worker runs under ``LD_PRELOAD=libfaketime.so.1`` with ``FAKETIME=+5`` or ``-5``
and ``FAKETIME_DONT_FAKE_MONOTONIC=1`` (only the wall clock moves), plus
``scripts/faketime_site`` on its ``PYTHONPATH``: its ``sitecustomize`` keeps
``time.sleep`` working under libfaketime 0.9.10. The trial checks first that a child's
``time.time()`` really is shifted, and fails if a worker's log shows libfaketime's
``EINVAL``.

Both workers consume one queue, so the attempts of one run land on either. The runs
mix Celery's retry flavours: ``self.retry()`` with countdown 0 and with countdown 1 (an
ETA written by one clock and waited for by the other), ``autoretry_for``, a retry that
ends in an exception, ``max_retries`` exhausted, and runs revoked between two
attempts. Every attempt works 0.3 s (``--work``), so a worker's flusher writes one
attempt's state to the database before the next attempt, on the other clock, changes it
(with no such pause, the final state usually reaches the database alone and no write
order is tested). Every attempt notes which worker ran it and how far that worker's
``time.time()`` was from Redis's ``TIME`` (the measured skew).

When every run is settled for Celery, the workers stop (each flushes what it has),
``tasktrail.flusher.flush_all()`` writes the rest, and each ``TaskRun`` row is
compared with ``AsyncResult(id)``: status (SUCCESS -> SUCCESSFUL, FAILURE -> FAILED,
REVOKED -> CANCELLED), the result of a success, the exception type and message of a
failure. The hot record (``get_run``) must say the same. Prints counts; exits 1 on
any mismatch, 2 when libfaketime is missing or does not shift a child's clock.

``--lost-after`` and ``--heartbeat`` set tasktrail's liveness bounds on both workers
(default: tasktrail's defaults, 60 s and 10 s). No worker is ever killed here, so the
trial also fails if one worker's settler took the other for lost (tasktrail's
``<prefix>:settling:<hostname>`` key): heartbeats carry each host's wall clock, so a
``LOST_AFTER`` shorter than the skew between hosts (``--lost-after 3``) makes the worker
behind look lost to the one ahead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import trial_harness as harness

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
# A sitecustomize that makes time.sleep work under libfaketime (see its docstring).
FAKETIME_SITE = Path(__file__).resolve().parent / "faketime_site"
SKEWS = {"ahead": "+5", "behind": "-5"}
CONCURRENCY = 3
STATES = {"SUCCESS": "SUCCESSFUL", "FAILURE": "FAILED", "REVOKED": "CANCELLED"}

# One plan per index modulo 20: (task, retries, countdown, end).
PLANS: list[tuple[str, int, float, str]] = [
    *[("flaky", 2 + i % 2, 0.0, "success") for i in range(9)],
    *[("flaky", 2, 1.0, "success") for _ in range(3)],
    ("autoretry", 3, 0.0, "success"),
    ("autoretry", 2, 0.0, "success"),
    ("flaky", 2, 0.0, "raise"),
    ("flaky", 3, 0.0, "raise"),
    ("flaky", 2, 0.0, "exhaust"),
    ("flaky", 1, 1.0, "exhaust"),
    ("flaky", 0, 4.0, "revoke"),
    ("flaky", 4, 0.0, "success"),
]


def faketime_env(offset: str) -> dict[str, str]:
    """A worker's environment for a wall clock ``offset`` seconds off (monotonic real)."""
    return {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join([str(FAKETIME_SITE), os.environ.get("PYTHONPATH", "")]),
    }


def check_faketime() -> str | None:
    """None if libfaketime shifts a child's ``time.time()`` as asked (and leaves its
    ``time.sleep`` working), else why not."""
    if not FAKETIME_LIB.exists():
        return f"{FAKETIME_LIB} is missing: apt-get update && apt-get install -y libfaketime"
    for name, offset in SKEWS.items():
        code = "import time; time.sleep(0.01); print(time.time())"
        before = time.time()
        done = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, **faketime_env(offset)},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        after = time.time()
        try:
            shift = float(done.stdout) - (before + after) / 2
        except ValueError:
            return f"a child under libfaketime did not run: {done.stderr[-500:]}"
        if abs(shift - float(offset)) > 1.0:
            return f"libfaketime shifted the {name} child's clock by {shift:+.2f} s, not {offset}"
    return None


@dataclass
class Run:
    id: str
    key: str
    task: str
    end: str
    executions: int = 0
    hosts: list[str] = field(default_factory=list)
    celery_state: str = ""
    problems: list[str] = field(default_factory=list)


def publish(index: int, queue: str, work: float) -> Run:
    from scripts.trial_tasks import autoretry, flaky

    task, retries, countdown, end = PLANS[index % len(PLANS)]
    key = uuid.uuid4().hex
    if task == "autoretry":
        result = autoretry.apply_async((key, retries, work), queue=queue)
    else:
        result = flaky.apply_async((key, retries, countdown, end, work), queue=queue)
    return Run(result.id, key, task, end)


def revoke_between_attempts(runs: list[Run], timeout: float) -> None:
    """Revoke the ``revoke`` runs once their first attempt asked for a retry."""
    from celery import current_app
    from celery.result import AsyncResult

    pending = {r.id for r in runs if r.end == "revoke"}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for run_id in sorted(pending):
            if AsyncResult(run_id).state == "RETRY":
                current_app.control.revoke(run_id)
                pending.discard(run_id)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} runs never retried, so never revoked")


def celery_settled(runs: list[Run]) -> bool:
    from celery.result import AsyncResult

    return all(AsyncResult(r.id).state in STATES for r in runs)


def compare(runs: list[Run]) -> dict[str, Any]:
    """Check every row (and hot record) against Celery; return the figures."""
    from celery.result import AsyncResult

    from scripts.trial_tasks import executions, hosts_key, redis_client
    from tasktrail.flusher import flush_all
    from tasktrail.models import TaskRun
    from tasktrail.runs import find_run

    flushed = flush_all(timeout=60.0)
    rows = {row.id: row for row in TaskRun.objects.filter(pk__in=[r.id for r in runs])}
    counts = executions([r.key for r in runs])
    client = redis_client()
    figures: Counter[str] = Counter()
    for run, count in zip(runs, counts, strict=True):
        run.executions = count
        hosts: Any = client.lrange(hosts_key(run.key), 0, -1)
        run.hosts = [h.decode() for h in hosts]
        celery: AsyncResult[Any] = AsyncResult(run.id)
        state = str(celery.state)
        run.celery_state = state
        expected = STATES.get(state)
        row = rows.get(run.id)
        hot = find_run(run.id)
        if expected is None:
            run.problems.append(f"Celery never settled it ({state})")
            continue
        if row is None:
            run.problems.append("no database row")
            continue
        if row.status != expected:
            run.problems.append(f"row {row.status}, Celery {state}")
        if hot is None or hot.status != expected:
            run.problems.append(f"hot record {hot.status if hot else 'missing'}, Celery {state}")
        if state == "SUCCESS" and row.result != json.loads(json.dumps(celery.result)):
            run.problems.append(f"row result {row.result!r}, Celery {celery.result!r}")
        if state == "FAILURE":
            exc = celery.result
            name = type(exc).__qualname__
            if not row.error_type.endswith(f".{name}") or row.error_message != str(exc):
                run.problems.append(
                    f"row error {row.error_type}: {row.error_message!r}, Celery {name}: {exc!s}"
                )
        figures[f"Celery {state}"] += 1
        figures["rows equal to Celery"] += not run.problems
        if row.attempts != count and state != "REVOKED":
            figures["rows whose attempts differ from executions (info)"] += 1
        if row.finished_at and row.started_at and row.finished_at < row.started_at:
            figures["rows finished before they started, by skewed stamps (info)"] += 1
        figures["runs with attempts on both workers"] += len(set(run.hosts)) > 1
        figures["executions"] += count
    figures["rows flushed by the script"] = flushed
    return dict(figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--runs", type=int, default=200, help="runs (default 200)")
    add("--broker", default="redis", help="redis, amqp or a broker URL")
    add("--lost-after", type=float, default=60.0, help="LOST_AFTER of both workers (60)")
    add("--heartbeat", type=float, default=10.0, help="HEARTBEAT_INTERVAL of both (10)")
    add("--work", type=float, default=0.3, help="seconds each attempt works (0.3)")
    add("--timeout", type=float, default=None, help="seconds for Celery to settle every run")
    add("--json", type=Path, default=None, help="write the figures here")
    add("--keep-logs", action="store_true", help="keep the worker logs and database")
    args = parser.parse_args()
    harness.stop_on_sigterm()
    started = time.monotonic()

    if problem := check_faketime():
        print(f"skew trial cannot run: {problem}", file=sys.stderr)
        return 2
    trial = harness.configure(
        "skew", args.broker, lost_after=args.lost_after, heartbeat=args.heartbeat
    )
    queue = f"{trial.prefix}-skew"
    workers = harness.TrialWorkers(trial)
    runs: list[Run] = []
    try:
        nodes = [
            workers.start(
                name, queues=[queue], concurrency=CONCURRENCY, env=faketime_env(offset), wait=False
            )
            for name, offset in SKEWS.items()
        ]
        for node in nodes:
            workers.wait_ready(node)
        clocks = ", ".join(f"{n.hostname} ({SKEWS[n.hostname.split('-')[0]]} s)" for n in nodes)
        print(f"skew trial: {args.runs} runs on {trial.broker}, workers {clocks}, "
              f"LOST_AFTER {args.lost_after:g} s", flush=True)  # fmt: skip
        runs = [publish(i, queue, args.work) for i in range(args.runs)]
        timeout = args.timeout or 120 + 0.5 * args.runs
        revoke_between_attempts(runs, timeout)
        if not harness.wait_until(lambda: celery_settled(runs), timeout, every=0.5):
            print(f"  Celery did not settle every run within {timeout:g} s", flush=True)
        workers.stop_all()  # warm shutdown: each worker's flusher writes what it has
        figures = compare(runs)
        from scripts.trial_tasks import offsets_key, redis_client

        raw: Any = redis_client().hgetall(offsets_key())
        offsets = {k.decode(): float(v) for k, v in raw.items()}
        settled: Any = redis_client().keys(f"{trial.prefix}:settling:*")
    finally:
        harness.cleanup(trial, workers, [queue], [r.id for r in runs])

    problems = [f"{r.id} ({r.task}/{r.end}, {r.executions} executions on "
                f"{', '.join(h.split('-')[0] for h in r.hosts)}): {p}"
                for r in runs for p in r.problems]  # fmt: skip
    for key in settled:
        lost = key.decode().rsplit(":settling:", 1)[-1]
        problems.append(f"{lost} was settled as lost by its peer while it was alive")
    for worker in workers.started:
        if "[Errno 22] Invalid argument" in worker.log.read_text(errors="replace"):
            problems.append(f"{worker.hostname} hit libfaketime's EINVAL; see {worker.log}")
    for name, offset in SKEWS.items():
        seen = [v for host, v in offsets.items() if host.startswith(f"{name}-")]
        if not seen or abs(seen[0] - float(offset)) > 1.0:
            problems.append(f"the {name} worker's clock was off by {seen} s, not {offset} s")
    elapsed = time.monotonic() - started
    clocks = ", ".join(f"{h.split('@')[0]} {v:+.2f} s" for h, v in sorted(offsets.items()))
    print(f"\nmeasured clock offsets from Redis TIME: {clocks}")
    for name, value in sorted(figures.items()):
        print(f"  {name}: {value}")
    print(f"runs: {len(runs)}; mismatches: {len(problems)}; wall time {elapsed:.0f} s")
    for problem in problems:
        print(f"  MISMATCH {problem}")
    if args.json:
        args.json.write_text(json.dumps({"runs": len(runs), "figures": figures,
                                         "offsets": offsets, "problems": problems,
                                         "wall_s": elapsed}, indent=1))  # fmt: skip
    harness.finish(trial, failed=bool(problems) or args.keep_logs)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
