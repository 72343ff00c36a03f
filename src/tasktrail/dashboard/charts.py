"""Inline SVG charts (no JavaScript): throughput and failure rate as bars, latency
percentiles as lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasktrail.latency import Percentiles
from tasktrail.stats import Bucket

WIDTH = 600
HEIGHT = 120
GUTTER = 1.0


@dataclass(frozen=True, kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    failed_y: float
    failed_height: float
    label: str


@dataclass(frozen=True, kw_only=True)
class Chart:
    title: str
    bars: tuple[Bar, ...]
    peak: int
    total: int
    failed: int
    rate_points: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def failure_rate(self) -> str:
        return f"{self.failed * 100.0 / self.total:.1f}%" if self.total else "0%"

    @property
    def summary(self) -> str:
        return (
            f"{self.title}: {self.total} runs finished, {self.failed} failed "
            f"({self.failure_rate}); busiest interval {self.peak}."
        )


def bar_chart(title: str, buckets: Sequence[Bucket], label_format: str) -> Chart:
    """Finished runs per bucket as bars, failed ones stacked in red, failure rate as a line."""
    peak = max((b.finished for b in buckets), default=0)
    slot = WIDTH / max(1, len(buckets))
    bars = []
    points = []
    for index, bucket in enumerate(buckets):
        height = HEIGHT * bucket.finished / peak if peak else 0.0
        failed_height = HEIGHT * bucket.failed / peak if peak else 0.0
        x = index * slot
        bars.append(
            Bar(
                x=round(x, 2),
                y=round(HEIGHT - height, 2),
                width=round(max(1.0, slot - GUTTER), 2),
                height=round(height, 2),
                failed_y=round(HEIGHT - failed_height, 2),
                failed_height=round(failed_height, 2),
                label=(
                    f"{bucket.start.strftime(label_format)}: {bucket.finished} finished, "
                    f"{bucket.failed} failed"
                ),
            )
        )
        rate_y = HEIGHT - HEIGHT * bucket.failure_rate
        points.append(f"{x + slot / 2:.1f},{rate_y:.1f}")
    return Chart(
        title=title,
        bars=tuple(bars),
        peak=peak,
        total=sum(b.finished for b in buckets),
        failed=sum(b.failed for b in buckets),
        rate_points=" ".join(points),
    )


@dataclass(frozen=True, kw_only=True)
class Line:
    name: str  # p50, p95, p99
    points: str  # SVG polyline points; buckets without runs are skipped


@dataclass(frozen=True, kw_only=True)
class LatencyChart:
    title: str
    lines: tuple[Line, ...]
    peak: float
    runs: int
    summary: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def peak_label(self) -> str:
        return seconds_label(self.peak)


def seconds_label(value: float | None) -> str:
    """A duration as people read it: 850 ms, 4.2 s, 3.5 min."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def latency_chart(title: str, values: Sequence[Percentiles], label: str) -> LatencyChart:
    """p50, p95 and p99 per bucket as three lines on one linear scale (0 to the peak)."""
    peak = max((p.p99 or 0.0 for p in values), default=0.0)
    slot = WIDTH / max(1, len(values))
    lines = []
    for name in ("p50", "p95", "p99"):
        points: list[str] = []
        for index, item in enumerate(values):
            value = getattr(item, name)
            if value is None:
                continue  # no runs in this bucket: nothing to draw
            y = HEIGHT - (HEIGHT * value / peak if peak else 0.0)
            points.append(f"{index * slot + slot / 2:.1f},{y:.1f}")
        lines.append(Line(name=name, points=" ".join(points)))
    runs = sum(p.count for p in values)
    worst = max((p.p99 for p in values if p.p99 is not None), default=None)
    return LatencyChart(
        title=title,
        lines=tuple(lines),
        peak=peak,
        runs=runs,
        summary=f"{title} ({label}): {runs} runs; highest p99 {seconds_label(worst)}.",
    )


SPARK_WIDTH = 120
SPARK_HEIGHT = 24


@dataclass(frozen=True, kw_only=True)
class Sparkline:
    """A small bar per interval (a failure group's failures per hour)."""

    bars: tuple[Bar, ...]
    peak: int
    total: int
    summary: str
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT


def sparkline(counts: Sequence[int], summary: str) -> Sparkline:
    peak = max(counts, default=0)
    slot = SPARK_WIDTH / max(1, len(counts))
    bars = []
    for index, count in enumerate(counts):
        # An interval with failures shows at least a sliver, however tall the peak.
        height = max(1.0, SPARK_HEIGHT * count / peak) if count else 0.0
        bars.append(
            Bar(
                x=round(index * slot, 2),
                y=round(SPARK_HEIGHT - height, 2),
                width=round(max(1.0, slot - GUTTER), 2),
                height=round(height, 2),
                failed_y=0.0,
                failed_height=0.0,
                label=str(count),
            )
        )
    return Sparkline(bars=tuple(bars), peak=peak, total=sum(counts), summary=summary)
