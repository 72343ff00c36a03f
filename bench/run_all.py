"""Run every benchmark, one after the other, and print each one's last lines.

uv run python bench/run_all.py --quick    # a reduced version of everything, < 5 min
uv run python bench/run_all.py            # the full suite (about half an hour)
uv run python bench/run_all.py --plots    # then draw docs/img/*.png from the results
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

SCRIPTS = (
    "throughput", "latency", "fanout", "hot_loop", "status_endpoint", "memory", "slow_readers",
)  # fmt: skip


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SCRIPTS), help=f"a subset of {SCRIPTS}")
    p.add_argument("--plots", action="store_true", help="draw docs/img/*.png at the end")
    args = p.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    if set(chosen) - set(SCRIPTS):
        p.error(f"choose from {SCRIPTS}")
    flags = [
        *(["--quick"] if args.quick else []),
        *(["--repeat", str(args.repeat)] if args.repeat else []),
    ]
    if args.dry_run:
        flags = ["--dry-run"]
    started = time.monotonic()
    summary: list[tuple[str, str, float]] = []
    failed = False
    for name in chosen:
        t0 = time.monotonic()
        print(f"=== {name} {' '.join(flags)}", flush=True)
        done = subprocess.run(
            [harness.PY, str(harness.ROOT / "bench" / f"{name}.py"), *flags],
            cwd=harness.ROOT, capture_output=True, text=True,
        )  # fmt: skip
        print(done.stdout, end="", flush=True)
        if done.returncode:
            failed = True
            print(done.stderr[-3000:], file=sys.stderr)
        lines = done.stdout.strip().splitlines()
        last = lines[-1] if lines and not done.returncode else f"FAILED ({done.returncode})"
        summary.append((name, last, time.monotonic() - t0))
    if args.plots and not args.dry_run and not failed:
        subprocess.run([harness.PY, str(harness.ROOT / "bench" / "plots.py")], check=True)
    print()
    print(f"all benchmarks in {time.monotonic() - started:.0f} s")
    for name, last, seconds in summary:
        print(f"{name:16} {seconds:6.0f} s  {last}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
