"""Plans of checks, advanced together so that independent cases wait concurrently.

A case launches its Celery work and returns the steps that judge it. Every plan is
advanced by one polling loop (:meth:`Judge.wait`): waiting for one case's verdict moves
every other case forward too, so the matrix takes about as long as its slowest case,
not the sum of them, and no case sleeps.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, states

from tasktrail.runs import Run
from tasktrail.status import Status

from .referee import (
    ABSENT,
    CeleryView,
    Row,
    celery_view,
    disagreements,
    render,
    same,
    summary,
    tasktrail_view,
)

SETTLE = 10.0  # seconds tasktrail may lag behind Celery's answer
CELERY_WITHIN = 90.0  # seconds Celery itself gets to settle an id


@dataclass
class Plan:
    """The steps that judge one case in one worker variant, and what they found."""

    name: str
    steps: deque[Step] = field(default_factory=deque)
    failures: list[str] = field(default_factory=list)
    observed: dict[str, tuple[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def done(self) -> bool:
        return self.finished is not None

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def advance(self) -> None:
        while self.steps:
            step = self.steps[0]
            try:
                if not step.poll(self):
                    return
            except AssertionError as exc:  # a precondition a step states itself
                self.fail(f"{step.describe()}: {exc}")
            except Exception:  # a broken step fails its case, not the loop
                self.fail(f"{step.describe()} raised:\n{traceback.format_exc()}")
            self.steps.popleft()
        self.finished = time.monotonic()

    def report(self) -> str:
        took = (self.finished or time.monotonic()) - self.started
        head = f"{self.name}: {len(self.failures)} disagreement(s) (case took {took:.1f}s)"
        return "\n\n".join([head, *self.failures])


class Step:
    """One thing a plan waits for or does; ``poll`` returns True once it is finished."""

    def poll(self, plan: Plan) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class Do(Step):
    """Act once (publish the next generation, open a gate, revoke...)."""

    def __init__(self, description: str, action: Callable[[], Any]) -> None:
        self.description = description
        self.action = action

    def poll(self, plan: Plan) -> bool:
        self.action()
        return True

    def describe(self) -> str:
        return f"Do({self.description})"


class WaitFor(Step):
    """Wait until ``predicate`` holds (the task body reached a point); Celery-side, so
    a timeout means the case or the worker is wrong."""

    def __init__(self, description: str, predicate: Callable[[], bool]) -> None:
        self.description = description
        self.predicate = predicate
        self.started: float | None = None

    def describe(self) -> str:
        return f"WaitFor({self.description})"

    def poll(self, plan: Plan) -> bool:
        now = time.monotonic()
        self.started = self.started or now
        if self.predicate():
            return True
        if now - self.started > CELERY_WITHIN:
            plan.fail(f"{self.description}: did not happen within {CELERY_WITHIN:.0f}s")
            return True
        return False


class All(Step):
    """Independent steps, polled together; finished when every one is."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self.pending = list(steps)

    def poll(self, plan: Plan) -> bool:
        still = []
        for step in self.pending:
            try:
                if not step.poll(plan):
                    still.append(step)
            except Exception:
                plan.fail(f"{step.describe()} raised:\n{traceback.format_exc()}")
        self.pending = still
        return not still


class Agree(Step):
    """Wait until Celery has an answer for ``task_id`` (ready, or ``until`` holds), then
    until tasktrail's record agrees with it; fail after :data:`SETTLE` seconds."""

    def __init__(
        self,
        ctx: Any,
        task_id: str,
        role: str,
        *,
        until: Callable[[CeleryView], bool] | None = None,
        view: Callable[[], CeleryView] | None = None,
        transient: bool = False,
        stable: float = 0.0,
    ) -> None:
        """``transient``: Celery's answer at ``until`` is a passing state (RETRY, say);
        the record must show it before Celery moves on. ``stable``: the agreement must
        hold this long (where Celery's own last write decides a race)."""
        self.ctx = ctx
        self.task_id = str(task_id)
        self.role = role
        self.until = until
        self.view = view or (lambda: celery_view(ctx.app, self.task_id))
        self.transient = transient
        self.stable = stable
        self.started: float | None = None
        self.ready_at: float | None = None
        self.captured: CeleryView | None = None
        self.agreed_at: float | None = None

    def describe(self) -> str:
        return f"Agree({self.role} [{self.task_id}])"

    def poll(self, plan: Plan) -> bool:
        now = time.monotonic()
        self.started = self.started or now
        view = self.view()
        if self.ready_at is None:
            if not (self.until(view) if self.until else view.ready):
                if now - self.started > CELERY_WITHIN:
                    plan.fail(
                        f"{self.role} [{self.task_id}]: Celery itself did not settle within "
                        f"{CELERY_WITHIN:.0f}s (last: {view.describe()}): the case is wrong, "
                        "or the worker is stuck; not a tasktrail verdict"
                    )
                    return True
                return False
            self.ready_at = now
            self.captured = view
            if self.ctx.observe_only:
                plan.observed[self.role] = summary(view)
                return True
        expected = self.captured if self.transient and self.captured else view
        rows = disagreements(expected, tasktrail_view(self.task_id))
        if not rows:
            self.agreed_at = self.agreed_at or now
            return now - self.agreed_at >= self.stable
        self.agreed_at = None
        if self.transient and view.state != expected.state:
            plan.fail(
                render(self.task_id, f"{self.role} (Celery moved on to {view.state} first)",
                       rows, expected)
            )  # fmt: skip
            return True
        if now - self.ready_at > SETTLE:
            plan.fail(render(self.task_id, self.role, rows, view))
            return True
        return False


class AgreeOrSwept(Step):
    """For a message the broker may drop before any worker sees it (RabbitMQ expires a
    message published with a past ``expires``, TTL 0, unless a consumer takes it at
    once): either Celery settles the id and the record agrees with it, or Celery never
    hears of it (PENDING for ever) and the record must not stay READY beyond the
    sweep's bound."""

    def __init__(self, ctx: Any, task_id: str, role: str, bound: Callable[[], float]) -> None:
        self.ctx = ctx
        self.task_id = str(task_id)
        self.role = role
        self.bound = bound
        self.agree = Agree(ctx, task_id, role)
        self.started: float | None = None

    def describe(self) -> str:
        return f"AgreeOrSwept({self.role} [{self.task_id}])"

    def poll(self, plan: Plan) -> bool:
        now = time.monotonic()
        self.started = self.started or now
        if self.agree.ready_at is not None or celery_view(self.ctx.app, self.task_id).ready:
            return self.agree.poll(plan)
        if now - self.started < SETTLE:
            return False  # a delivered message is settled by now; only then ask the sweep
        bound = self.bound()
        if now - self.started < bound:
            return False
        if self.ctx.observe_only:
            plan.observed[self.role] = ("PENDING", "never delivered")
            return True
        run = tasktrail_view(self.task_id)
        if run is not None and run.status == Status.READY:
            plan.fail(
                render(self.task_id, f"{self.role}: the broker dropped it, Celery never "
                       f"settled it (within {bound:.0f}s)",
                       [Row("status", "no record, or settled by the sweep", "READY")], None)
            )  # fmt: skip
        return True


_MISSING: Any = object()


class Diverge(Step):
    """A documented divergence: Celery stores nothing (stays ``celery_state``) and
    tasktrail, more informative, records the real outcome. Waits for ``until`` (the task
    body's counter, say), then for the record to show ``status`` (and ``result`` /
    ``error_type`` when given)."""

    def __init__(
        self,
        ctx: Any,
        task_id: str,
        role: str,
        *,
        until: Callable[[], bool],
        celery_state: str,
        status: Status,
        result: Any = _MISSING,
        error_type: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.task_id = str(task_id)
        self.role = role
        self.until = until
        self.celery_state = celery_state
        self.status = status
        self.result = result
        self.error_type = error_type
        self.started: float | None = None
        self.ready_at: float | None = None

    def describe(self) -> str:
        return f"Diverge({self.role} [{self.task_id}])"

    def _rows(self, run: Run | None) -> list[Row]:
        if run is None:
            return [Row("status", f"(documented) {self.status.value}", ABSENT)]
        rows = []
        if run.status != self.status:
            rows.append(Row("status", f"(documented) {self.status.value}", run.status.value))
        if self.result is not _MISSING and not same(self.result, run.result):
            rows.append(Row("result", f"(documented) {self.result!r}", repr(run.result)))
        if self.error_type is not None:
            got = run.error.type if run.error else "no error"
            if got != self.error_type:
                rows.append(Row("error.type", f"(documented) {self.error_type}", got))
        return rows

    def poll(self, plan: Plan) -> bool:
        now = time.monotonic()
        self.started = self.started or now
        if self.ready_at is None:
            if not self.until():
                if now - self.started > CELERY_WITHIN:
                    plan.fail(f"{self.role} [{self.task_id}]: the task never ran")
                    return True
                return False
            self.ready_at = now
        view = celery_view(self.ctx.app, self.task_id)
        if self.ctx.observe_only:
            plan.observed[self.role] = summary(view)
            return True
        if view.state != self.celery_state:
            plan.fail(
                f"{self.role} [{self.task_id}]: Celery no longer behaves as documented: "
                f"expected {self.celery_state}, Celery says {view.describe()}; "
                "check the documented divergence against Celery's source"
            )
            return True
        rows = self._rows(tasktrail_view(self.task_id))
        if not rows:
            return True
        if now - self.ready_at > SETTLE:
            plan.fail(render(self.task_id, self.role + " (documented divergence)", rows, view))
            return True
        return False


class Eventually(Step):
    """``probe`` returns the rows still wrong; fail if any remain after ``within`` s."""

    def __init__(
        self, ctx: Any, description: str, probe: Callable[[], list[Row]], within: float
    ) -> None:
        self.ctx = ctx
        self.description = description
        self.probe = probe
        self.within = within
        self.started: float | None = None

    def describe(self) -> str:
        return f"Eventually({self.description})"

    def poll(self, plan: Plan) -> bool:
        if self.ctx.observe_only:
            return True
        now = time.monotonic()
        self.started = self.started or now
        rows = self.probe()
        if not rows:
            return True
        if now - self.started > self.within:
            plan.fail(render("-", f"{self.description} (within {self.within:.0f}s)", rows, None))
            return True
        return False


class Expect(Step):
    """A fact checked once, at this point of the plan (an execution count, say)."""

    def __init__(self, description: str, probe: Callable[[], list[Row]]) -> None:
        self.description = description
        self.probe = probe

    def describe(self) -> str:
        return f"Expect({self.description})"

    def poll(self, plan: Plan) -> bool:
        rows = self.probe()
        if rows:
            plan.fail(render("-", self.description, rows, None))
        return True


def pending_or_agreeing(app: Celery, task_id: str) -> list[Row]:
    """For ids Celery never settles itself: AsyncResult must stay PENDING, or (if
    tasktrail's sweep settles them through the result backend) agree with the record."""
    view = celery_view(app, task_id)
    if view.state == states.PENDING:
        return []
    return disagreements(view, tasktrail_view(task_id))


class Judge:
    """Every launched plan, advanced together."""

    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}

    def add(self, plan: Plan) -> None:
        self.plans[plan.name] = plan

    def sweep(self) -> None:
        for plan in list(self.plans.values()):
            if not plan.done:
                plan.advance()

    def wait(self, name: str, timeout: float = 300.0) -> Plan:
        plan = self.plans[name]
        deadline = time.monotonic() + timeout
        while not plan.done:
            if time.monotonic() > deadline:
                steps = ", ".join(s.describe() for s in plan.steps)
                plan.fail(f"the judge gave up after {timeout:.0f}s; still waiting for: {steps}")
                plan.finished = time.monotonic()
                break
            self.sweep()
            if not plan.done:
                time.sleep(0.05)
        return plan
