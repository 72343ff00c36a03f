"""Draw the figures of docs/benchmarks.md from bench/results/*.json (matplotlib, Agg).

uv run python bench/plots.py    # writes docs/img/latency.png and docs/img/fanout.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

IMG = harness.ROOT / "docs" / "img"
LABELS = {
    "tasktrail": "tasktrail SSE",
    "seeds": "seeds' stream (pub/sub polled, thread per client)",
    "poll": "celery-progress style polling (500 ms)",
}


def _load(name: str) -> dict[str, Any] | None:
    path = harness.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def latency(data: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for variant, samples in data["samples_ms"].items():
        if not samples:
            continue
        values = sorted(max(x, 0.01) for x in samples)
        ys = [(i + 1) / len(values) for i in range(len(values))]
        ax.plot(values, ys, label=f"{LABELS.get(variant, variant)} (n={len(values)})")
    ax.set_xscale("log")
    ax.set_xlabel("progress() in the worker -> client receipt (ms, log scale)")
    ax.set_ylabel("fraction of events")
    ax.axvline(1, color="grey", linestyle=":", linewidth=1)
    ax.axvline(5, color="grey", linestyle=":", linewidth=1)
    ax.text(1, 0.02, " 1 ms", color="grey")
    ax.text(5, 0.02, " 5 ms", color="grey")
    ax.set_title(f"Latency distribution (CDF), {data['events']} events x {data['repeats']} runs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    target = IMG / "latency.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def fanout(series: dict[str, dict[str, Any]]) -> Path:
    """``series``: server stack (h11, uvloop) -> the fan-out results measured with it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for server, data in series.items():
        for variant, marker in (("tasktrail", "o"), ("seeds", "s")):
            points = sorted(
                (r["clients"], r["last_ms"], r["p50_ms"], r["rss_mb"])
                for r in data["runs"]
                if r["variant"] == variant and r["last_ms"] is not None
            )
            if not points:
                continue
            label = f"{LABELS[variant].split(' (')[0]}, {server}"
            xs = [p[0] for p in points]
            left.plot(xs, [p[1] for p in points], marker, label=f"{label}: last client")
            left.plot(xs, [p[2] for p in points], marker, mfc="none", label=f"{label}: median")
            right.plot(xs, [p[3] for p in points], marker, label=label)
    left.axhline(1000, color="grey", linestyle=":", linewidth=1)
    left.set_xlabel("concurrent SSE clients on one uvicorn process")
    left.set_ylabel("time from progress() to receipt (ms)")
    left.set_title("One event to N clients")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    right.set_xlabel("concurrent SSE clients")
    right.set_ylabel("uvicorn RSS (MiB)")
    right.set_title("Web process memory")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    target = IMG / "fanout.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    if args.dry_run:
        print("plots: dry run ok")
        return 0
    IMG.mkdir(parents=True, exist_ok=True)
    made = []
    if (data := _load("latency")) is not None:
        made.append(latency(data))
    # fanout.json, plus fanout-<server>.json kept from runs with another BENCH_SERVER.
    series = {}
    for path in sorted(harness.RESULTS.glob("fanout*.json")):
        data = json.loads(path.read_text())
        server = path.stem.partition("-")[2] or data["machine"].get("server", "h11")
        series[server] = data
    if series:
        made.append(fanout(series))
    for path in made:
        print(f"wrote {path}")
    print(f"plots: {len(made)} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
