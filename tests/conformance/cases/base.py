"""What every case is built from: the variant context, the registry, step helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.canvas import Signature

from .. import tasks
from ..judge import Expect, Step
from ..referee import ABSENT, Row, tasktrail_view

PREFORK_ONLY = frozenset({"prefork"})


@dataclass
class Ctx:
    """One worker variant as the cases see it."""

    variant: str
    pool: str
    app: Celery
    queue: str
    hostname: str  # the worker's node name, for control commands meant for it alone
    observe_only: bool = False  # the control run: record Celery's answers only
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def tag(self, case: str) -> str:
        return f"{self.variant}-{case}-{self.run}"

    @staticmethod
    def name(task: str) -> str:
        return f"{tasks.__name__}.{task}"

    def sig(self, task: str, *args: Any, **options: Any) -> Signature:
        return self.app.signature(self.name(task), args=args, **options)

    def send(self, task: str, *args: Any, **options: Any) -> Any:
        return self.app.send_task(self.name(task), args=args, **options)

    @staticmethod
    def _redis() -> Any:
        return tasks.redis_client()

    def executions(self, tag: str) -> int:
        return int(self._redis().get(tasks.key(tag, "count")) or 0)

    def has_started(self, tag: str) -> bool:
        return bool(self._redis().exists(tasks.key(tag, "started")))

    def release(self, tag: str) -> None:
        self._redis().set(tasks.key(tag, "release"), "1", ex=600)


Launch = Callable[[Ctx, str], list[Step]]


@dataclass(frozen=True)
class Case:
    name: str
    launch: Launch
    doc: str
    pools: frozenset[str] | None = None  # None: every pool
    why_not: str = ""


CASES: dict[str, Case] = {}


def case(
    name: str = "", *, pools: frozenset[str] | None = None, why_not: str = ""
) -> Callable[[Launch], Launch]:
    def register(launch: Launch) -> Launch:
        key = name or launch.__name__
        assert key not in CASES, f"two cases named {key}"
        CASES[key] = Case(key, launch, (launch.__doc__ or "").strip(), pools, why_not)
        return launch

    return register


# -- small step builders ---------------------------------------------------------------


def executed(ctx: Ctx, tag: str, times: int) -> Step:
    def probe() -> list[Row]:
        got = ctx.executions(tag)
        return [] if got == times else [Row("executions", str(times), str(got))]

    return Expect(f"the task body ran {times} time(s), as under Celery alone", probe)


def attempts(ctx: Ctx, task_id: str, times: int) -> Step:
    def probe() -> list[Row]:
        if ctx.observe_only:
            return []
        run = tasktrail_view(task_id)
        got = ABSENT if run is None else str(run.attempts)
        return [] if got == str(times) else [Row("attempts", str(times), got)]

    return Expect(f"run.attempts counts the {times} executions [{task_id}]", probe)


def ran(ctx: Ctx, tag: str) -> Callable[[], bool]:
    return lambda: ctx.executions(tag) >= 1


def chain_ids(result: Any) -> list[str]:
    """The ids of a chain's steps, first to last (the result is the last step's)."""
    ids = []
    node = result
    while node is not None:
        ids.append(node.id)
        node = node.parent
    return ids[::-1]


def stale_ready_bound() -> float:
    """How long a READY run that can never run may stay READY: the sweep's setting, plus
    the worker's round (the sweep runs with the heartbeat), plus a margin."""
    from tasktrail.conf import settings as tasktrail_settings

    after = float(tasktrail_settings.UNDELIVERED_AFTER)
    if after > 60:
        raise AssertionError(
            f"TASKTRAIL['UNDELIVERED_AFTER'] is {after:.0f}s in the test settings: set it "
            "lower in tests/settings.py so the conformance tier stays fast"
        )
    return after + float(tasktrail_settings.HEARTBEAT_INTERVAL) + 10.0
