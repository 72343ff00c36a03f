"""Inline SVG bar charts of throughput and failure rate (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
