"""Alert rules and channels as frozen values, and the vocabulary of their settings.

``TASKTRAIL["ALERTS"]`` is read into these by :mod:`tasktrail.alerts.validation`;
docs/alerts.md describes every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlparse

Kind = Literal["failed", "retries_exhausted", "runtime", "queue_age", "no_worker", "failure_rate"]
KINDS: tuple[Kind, ...] = (
    "failed",
    "retries_exhausted",
    "runtime",
    "queue_age",
    "no_worker",
    "failure_rate",
)
QUEUE_KINDS = frozenset({"queue_age", "no_worker"})
NEEDS_SECONDS = frozenset({"runtime", "queue_age"})
CHANNEL_TYPES = ("email", "slack", "webhook")
TOP_LEVEL = ("CHANNELS", "RULES", "INTERVAL")
RULE_FIELDS = frozenset(
    {
        "kind",
        "channels",
        "tasks",
        "queues",
        "window",
        "seconds",
        "threshold",
        "period",
        "min_runs",
        "group_by",
    }
)
CHANNEL_FIELDS = {
    "email": frozenset({"type", "to", "from", "mailer", "timeout"}),
    "slack": frozenset({"type", "url", "timeout"}),
    "webhook": frozenset({"type", "url", "secret", "timeout"}),
}
DEFAULT_WINDOW = 300.0
DEFAULT_INTERVAL = 30.0
DEFAULT_MIN_RUNS = 10
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class Channel:
    name: str
    type: Literal["email", "slack", "webhook"]
    to: tuple[str, ...] = ()
    sender: str | None = None
    mailer: str | None = None  # Django 6.1+: a MAILERS alias
    url: str = ""
    secret: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def target(self) -> str:
        """Where it sends, safe to show: a Slack URL holds its token, so only the host."""
        if self.type == "email":
            return ", ".join(self.to)
        return urlparse(self.url).netloc


@dataclass(frozen=True, kw_only=True)
class Rule:
    id: str
    kind: Kind
    channels: tuple[str, ...]
    window: float = DEFAULT_WINDOW
    tasks: tuple[str, ...] = ("*",)
    queues: tuple[str, ...] | None = None  # None: Celery's configured queues
    seconds: float | None = None
    threshold: float | None = None
    period: float | None = None
    min_runs: int = DEFAULT_MIN_RUNS
    group_by: Literal["task", "queue", "rule"] = "task"

    def describe(self) -> str:
        """One line for the dashboard and the messages."""
        tasks = ", ".join(self.tasks)
        queues = ", ".join(self.queues) if self.queues is not None else "every configured queue"
        seconds, period = f"{self.seconds or 0:g} s", f"{self.period or self.window:g} s"
        if self.kind == "failed":
            return f"a run of {tasks} FAILED"
        if self.kind == "retries_exhausted":
            return f"a run of {tasks} FAILED after retrying"
        if self.kind == "runtime":
            return f"an attempt of {tasks} ran longer than {seconds}"
        if self.kind == "queue_age":
            return f"the oldest READY run of {queues} waited more than {seconds}"
        if self.kind == "no_worker":
            return f"no worker online consumes {queues}"
        return (
            f"at least {self.threshold or 0:.0%} of the runs of {tasks} failed over {period} "
            f"(at least {self.min_runs} runs)"
        )


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One configuration mistake; ``id`` is the system check id."""

    id: str
    message: str
    hint: str
    warning: bool = False


@dataclass(frozen=True, kw_only=True)
class Config:
    rules: tuple[Rule, ...] = ()
    channels: dict[str, Channel] = field(default_factory=dict)
    interval: float = DEFAULT_INTERVAL
