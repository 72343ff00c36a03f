"""What the journal of finished records costs on the hot path (src/tasktrail/journal.py).

Each variant drives the same transitions through ``tasktrail.transitions.apply`` in this
process, against the benchmark Redis: ``publish``, ``start`` and ``finish`` of N runs.
The baseline is the journal turned off (``journal.enabled``: the script is not asked for
the finished record, and nothing is kept); the variant is the journal on, as in a
worker, whose finish also returns the record and keeps it. Variants are interleaved, and the
figure is the median over ``--repeat`` rounds of microseconds per run, with the ratio.

    uv run python bench/finish_record.py            # 5,000 runs per round, 5 rounds
    uv run python bench/finish_record.py --quick    # 1,000 runs, 3 rounds
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness


def _round(runs: int, prefix: str) -> float:
    from tasktrail.transitions import apply, stamp

    started = time.perf_counter()
    for _ in range(runs):
        run_id = str(uuid.uuid4())
        now = time.time()
        apply(run_id, "publish", status="READY", create={"task": "bench.noop",
              "enqueued_at": stamp(now), "args": "[1, 2]", "kwargs": "{}"})  # fmt: skip
        apply(run_id, "start", attempt=1, status="RUNNING",
              fields={"worker": "bench@host"}, create={"started_at": stamp(now)})  # fmt: skip
        apply(run_id, "finish", attempt=1, status="SUCCESSFUL",
              fields={"finished_at": stamp(time.time()), "result": "3"})  # fmt: skip
    return (time.perf_counter() - started) / runs * 1e6


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    runs = 1_000 if args.quick else 5_000
    rounds = 3 if args.quick else harness.repeats(args)
    prefix = harness.unique_prefix("finrec")
    os.environ.update(harness.child_env(mode="tasktrail", prefix=prefix))
    import django

    django.setup()
    from tasktrail import journal

    if args.dry_run:
        print(f"would time {rounds} x 2 rounds of {runs:,} runs (publish, start, finish)")
        return 0
    timings: dict[str, list[float]] = {"baseline": [], "journal": []}
    try:
        for _ in range(rounds):
            for name, on in (("baseline", False), ("journal", True)):
                journal.enabled = on
                timings[name].append(_round(runs, prefix))
        kept = journal.size()
    finally:
        journal.enabled = True
        harness.cleanup_redis(prefix)
    base, with_journal = (harness.median(timings[n]) for n in ("baseline", "journal"))
    print(f"{runs:,} runs x {rounds} rounds, publish + start + finish, one process")
    print(f"  baseline (journal off)        {base:8.1f} us/run")
    print(f"  journal (record kept)         {with_journal:8.1f} us/run")
    print(f"  ratio journal/baseline        {with_journal / base:8.3f}x")
    print(f"  records kept at the end       {kept:8,d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
