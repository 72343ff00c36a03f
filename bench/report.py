"""Print the Markdown tables of docs/benchmarks.md from bench/results/*.json.

uv run python bench/report.py > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness


def _load(name: str) -> dict[str, Any] | None:
    path = harness.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _md(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    return f"_{m['at']}, commit {m['commit']}, load average at the end {m['loadavg']}_"


def throughput(data: dict[str, Any]) -> str:
    rows = []
    for variant, m in data["medians"].items():
        runs = data["runs"][variant]
        cpu = [sum(r["cpu_s"].values()) / r["tasks"] * 1000 for r in runs if "cpu_s" in r]
        rows.append([
            variant, int(m["enqueue_rate"]), int(m["e2e_rate"]),
            m.get("db_lag_s", "-"), data["ratios"].get(variant, "-"),
            round(harness.median(cpu), 2) if cpu else "-",
        ])  # fmt: skip
    return f"{data['tasks']} tasks, medians of {data['repeats']} runs. {_machine(data)}\n\n" + _md(
        ["variant", "enqueue/s", "end-to-end/s", "DB lag (s)", "x plain", "CPU ms/task"], rows
    )


def cpu(data: dict[str, Any]) -> str:
    rows = []
    for variant, runs in data["runs"].items():
        parts = [r["cpu_s"] for r in runs if "cpu_s" in r]
        if not parts:
            continue
        keys = list(parts[0])
        per_task = {
            k: round(harness.median(p[k] for p in parts) / runs[0]["tasks"] * 1000, 3) for k in keys
        }
        flusher = [r["flusher"] for r in runs if r.get("flusher")]
        fl = (
            round(harness.median(f.get("cpu_s", 0) for f in flusher) / runs[0]["tasks"] * 1000, 3)
            if flusher
            else "-"
        )
        rows.append([variant, *(per_task[k] for k in keys), fl])
    return _md(
        ["variant", "worker main", "worker pool", "publisher", "postgres*", "redis",
         "of which flusher thread"], rows,
    )  # fmt: skip


def latency(data: dict[str, Any]) -> str:
    rows = [
        [v, m["p50_ms"], m["p95_ms"], m["p99_ms"], m["max_ms"]] for v, m in data["medians"].items()
    ]
    return (
        f"{data['events']} events {data['spacing_s'] * 1000:g} ms apart, medians of "
        f"{data['repeats']} runs. {_machine(data)}\n\n"
        + _md(["variant", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    )


def fanout(data: dict[str, Any]) -> str:
    keys = ("connected", "received", "last_ms", "p50_ms", "p99_ms", "rss_mb", "redis_conns")
    rows = [[label, *(m[k] for k in keys)] for label, m in data["medians"].items()]
    return f"medians of {data['repeats']} runs. {_machine(data)}\n\n" + _md(
        [
            "variant @ clients",
            "connected",
            "received",
            "last client ms",
            "p50 ms",
            "p99 ms",
            "uvicorn RSS MiB",
            "Redis conns",
        ],
        rows,
    )


def hot_loop(data: dict[str, Any]) -> str:
    m = data["medians"]
    return f"medians of {len(data['runs'])} runs. {_machine(data)}\n\n" + _md(
        ["calls", "empty loop s", "with progress() s", "added s", "us per call", "events sent"],
        [[data["calls"], m["empty_s"], m["progress_s"], m["added_s"], m["per_call_us"],
          m["events"]]],
    )  # fmt: skip


def status(data: dict[str, Any]) -> str:
    rows = [
        [v, m["rps"], m["p50_ms"], m["p99_ms"], m["errors"]] for v, m in data["medians"].items()
    ]
    return (
        f"{data['concurrency']} clients, {data['duration_s']:g} s per run, medians of "
        f"{len(next(iter(data['runs'].values())))} runs. {_machine(data)}\n\n"
        + _md(["view", "req/s", "p50 ms", "p99 ms", "errors"], rows)
    )


def memory(data: dict[str, Any]) -> str:
    first, last = data["series"][0], data["series"][-1]
    keys = ("worker_main_mb", "worker_pool_mb", "web_mb", "redis_used_mb")
    rows = [[k, first[k], last[k], round(last[k] - first[k], 1)] for k in keys]
    return (
        f"{data['runs']} runs, one run. {_machine(data)}\n\n"
        + _md(["MiB", "before", "after", "growth"], rows)
        + f"\n\nWeb errors: {data['errors']}. Redis bytes kept per finished run: "
        f"{data['redis_bytes_per_run']}."
    )


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    if args.dry_run:
        print("report: dry run ok")
        return 0
    sections = [
        ("Throughput", "throughput", throughput),
        ("CPU per task (ms), from the throughput runs", "throughput", cpu),
        ("Latency", "latency", latency),
        ("Fan-out", "fanout", fanout),
        ("Hot loop", "hot_loop", hot_loop),
        ("Status endpoint", "status_endpoint", status),
        ("Memory", "memory", memory),
    ]
    for title, name, render in sections:
        data = _load(name)
        if data is not None:
            print(f"### {title}\n\n{render(data)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
