"""The matrix: one case per Celery behaviour.

A case publishes its work through a :class:`Ctx` (one worker variant: its app, its
queue) and returns the steps that judge it: for every task id involved, including ids
Celery marks but never runs, tasktrail's record must agree with Celery's own answer
(:class:`~tests.conformance.judge.Agree`), or show a documented divergence where Celery
stores nothing (:class:`~tests.conformance.judge.Diverge`). Cases are launched all at
once and judged concurrently; none of them sleeps.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, chain, chord, group, states
from celery.canvas import Signature, chunks, xstarmap
from kombu.exceptions import EncodeError

from tasktrail.status import Status

from . import tasks
from .judge import (
    Agree,
    AgreeOrSwept,
    All,
    Diverge,
    Do,
    Eventually,
    Expect,
    Step,
    WaitFor,
    pending_or_agreeing,
)
from .referee import ABSENT, Row, celery_view, eager_view, tasktrail_view

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
    """How long a READY run that can never run may stay READY: the sweep's setting."""
    from tasktrail.conf import settings as tasktrail_settings

    try:
        after = float(tasktrail_settings.STALE_READY_AFTER)
    except AttributeError as exc:
        raise AssertionError(
            "TASKTRAIL['STALE_READY_AFTER'] is not a setting yet: the sweep that settles "
            "READY runs which can never run is what this case checks"
        ) from exc
    if after > 60:
        raise AssertionError(
            f"TASKTRAIL['STALE_READY_AFTER'] is {after:.0f}s in the test settings: set it to "
            "a few seconds in tests/settings.py so the conformance tier stays fast"
        )
    return after + 10.0


# -- plain outcomes ----------------------------------------------------------------


@case()
def success(ctx: Ctx, tag: str) -> list[Step]:
    """A task returns a value."""
    return [Agree(ctx, ctx.send("add", 2, 3).id, "add(2, 3)")]


@case()
def exception(ctx: Ctx, tag: str) -> list[Step]:
    """A task raises ValueError."""
    return [Agree(ctx, ctx.send("fail", "plain failure").id, "fail()")]


@case()
def custom_exception(ctx: Ctx, tag: str) -> list[Step]:
    """A custom exception class with two positional args."""
    return [Agree(ctx, ctx.send("raise_custom", "order-7", "out of stock").id, "OrderError")]


@case()
def unencodable_exception_args(ctx: Ctx, tag: str) -> list[Step]:
    """An exception whose argument no serializer can encode (a lock): Celery stores it
    as celery.utils.serialization.UnpickleableExceptionWrapper."""
    return [Agree(ctx, ctx.send("raise_locked").id, "LockedError(Lock())")]


@case()
def unrebuildable_exception(ctx: Ctx, tag: str) -> list[Step]:
    """An exception that cannot be rebuilt from its args (keyword-only constructor):
    Celery stores it as UnpickleableExceptionWrapper too."""
    return [Agree(ctx, ctx.send("raise_keyword_only", 7).id, "KeywordOnlyError")]


@case()
def unprintable_exception(ctx: Ctx, tag: str) -> list[Step]:
    """An exception whose str() raises."""
    return [Agree(ctx, ctx.send("raise_unprintable").id, "UnprintableError")]


@case(
    pools=PREFORK_ONLY,
    why_not="on the threads pool Celery never settles it: nothing is stored or logged, the "
    "request stays active and AsyncResult PENDING for ever (apply_target's callback fails on "
    "the WorkerLostError it is given), so there is no answer to agree with",
)
def base_exception(ctx: Ctx, tag: str) -> list[Step]:
    """A BaseException that is not an Exception: on prefork Celery stores FAILURE with it."""
    task_id = ctx.send("raise_base_exception", tag).id
    return [Agree(ctx, task_id, "raise Abort()"), executed(ctx, tag, 1)]


@case()
def kombu_types_result(ctx: Ctx, tag: str) -> list[Step]:
    """A result of kombu's JSON types: datetime, date, Decimal, UUID, tuple."""
    return [Agree(ctx, ctx.send("return_kombu_types").id, "datetime/date/Decimal/UUID")]


@case()
def set_result(ctx: Ctx, tag: str) -> list[Step]:
    """A set: kombu cannot encode it, Celery stores FAILURE (EncodeError)."""
    return [Agree(ctx, ctx.send("return_set").id, "return {3, 1, 2}")]


@case()
def opaque_object_result(ctx: Ctx, tag: str) -> list[Step]:
    """A custom object without __json__: FAILURE (EncodeError)."""
    return [Agree(ctx, ctx.send("return_opaque").id, "return Opaque()")]


@case()
def reducible_object_result(ctx: Ctx, tag: str) -> list[Step]:
    """A custom object with __json__: stored as what it reduces to."""
    return [Agree(ctx, ctx.send("return_reducible").id, "return Reducible()")]


# -- when it runs ----------------------------------------------------------------------


@case()
def countdown(ctx: Ctx, tag: str) -> list[Step]:
    """countdown=1."""
    return [Agree(ctx, ctx.send("add", 1, 2, countdown=1).id, "add countdown=1")]


@case()
def eta(ctx: Ctx, tag: str) -> list[Step]:
    """eta one second ahead."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return [Agree(ctx, ctx.send("add", 2, 2, eta=when).id, "add eta=+1s")]


@case()
def expired(ctx: Ctx, tag: str) -> list[Step]:
    """expires already in the past: the worker revokes it ('expired'). On RabbitMQ
    Celery publishes it with TTL 0, and the broker drops it unless a consumer takes it
    at once: then Celery never settles it, and tasktrail's sweep must."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    task_id = ctx.send("counted_add", tag, 1, 1, expires=past).id
    return [
        AgreeOrSwept(ctx, task_id, "add expires=-60s", stale_ready_bound),
        executed(ctx, tag, 0),
    ]


@case()
def revoke_queued(ctx: Ctx, tag: str) -> list[Step]:
    """Revoked while it waits for its countdown: REVOKED ('revoked'), never runs."""
    task_id = ctx.send("counted_add", tag, 1, 1, countdown=3).id
    ctx.app.control.revoke(task_id)
    return [Agree(ctx, task_id, "revoked before it ran"), executed(ctx, tag, 0)]


@case(pools=PREFORK_ONLY, why_not="only prefork can terminate a running task")
def revoke_terminate(ctx: Ctx, tag: str) -> list[Step]:
    """revoke(terminate=True) sent to the worker running it: REVOKED ('terminated')."""
    task_id = ctx.send("sleeper", tag, 30).id
    revoke = lambda: ctx.app.control.revoke(task_id, terminate=True, destination=[ctx.hostname])  # noqa: E731
    return [
        WaitFor(f"sleeper running [{task_id}]", lambda: ctx.has_started(tag)),
        Do("revoke terminate, to its worker", revoke),
        Agree(ctx, task_id, "terminated"),
        executed(ctx, tag, 1),
    ]


@case(pools=PREFORK_ONLY, why_not="only prefork can terminate a running task")
def revoke_terminate_broadcast(ctx: Ctx, tag: str) -> list[Step]:
    """revoke(terminate=True) broadcast, as users call it: every other worker marks the
    id REVOKED ('revoked': it is PENDING to them, Celery 5.7 worker/control.py _revoke)
    while its own worker terminates it ('terminated'); the last write is Celery's answer,
    and the record must say the same."""
    task_id = ctx.send("sleeper", tag, 30).id
    return [
        WaitFor(f"sleeper running [{task_id}]", lambda: ctx.has_started(tag)),
        Do("revoke terminate, broadcast", lambda: ctx.app.control.revoke(task_id, terminate=True)),
        Agree(ctx, task_id, "terminated (broadcast)", stable=2.0),
        executed(ctx, tag, 1),
    ]


@case(pools=PREFORK_ONLY, why_not="time limits need the prefork pool")
def soft_time_limit_caught(ctx: Ctx, tag: str) -> list[Step]:
    """SoftTimeLimitExceeded caught by the task, which then returns."""
    return [Agree(ctx, ctx.send("soft_limit_caught", tag).id, "soft limit caught")]


@case(pools=PREFORK_ONLY, why_not="time limits need the prefork pool")
def soft_time_limit_uncaught(ctx: Ctx, tag: str) -> list[Step]:
    """SoftTimeLimitExceeded not caught: FAILURE."""
    return [Agree(ctx, ctx.send("soft_limit_uncaught", tag).id, "soft limit uncaught")]


@case(pools=PREFORK_ONLY, why_not="time limits need the prefork pool")
def hard_time_limit(ctx: Ctx, tag: str) -> list[Step]:
    """The hard time limit kills the child: FAILURE TimeLimitExceeded."""
    task_id = ctx.send("hard_limit", tag).id
    return [Agree(ctx, task_id, "hard limit"), executed(ctx, tag, 1)]


# -- retries -----------------------------------------------------------------------------


@case()
def retry_countdown(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry(countdown=RETRY_DELAY) once, then success."""
    task_id = ctx.send("retry_once", tag).id
    return [Agree(ctx, task_id, "retried once"), executed(ctx, tag, 2), attempts(ctx, task_id, 2)]


@case()
def retry_state(ctx: Ctx, tag: str) -> list[Step]:
    """While Celery says RETRY (countdown=3), the record says RETRYING with the error."""
    task_id = ctx.send("retry_slowly", tag).id
    return [
        Agree(ctx, task_id, "RETRY", until=lambda v: v.state == states.RETRY, transient=True),
        Agree(ctx, task_id, "after the retry"),
        executed(ctx, tag, 2),
    ]


@case()
def retry_exhausted(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry(exc=ValueError) past max_retries=2: FAILURE ValueError."""
    task_id = ctx.send("retry_always", tag).id
    return [
        Agree(ctx, task_id, "retries exhausted"),
        executed(ctx, tag, 3),
        attempts(ctx, task_id, 3),
    ]


@case()
def retry_exhausted_without_exc(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry() without exc past max_retries: FAILURE MaxRetriesExceededError."""
    task_id = ctx.send("retry_without_exc", tag).id
    return [
        Agree(ctx, task_id, "retries exhausted"),
        executed(ctx, tag, 2),
        attempts(ctx, task_id, 2),
    ]


@case()
def autoretry_for(ctx: Ctx, tag: str) -> list[Step]:
    """autoretry_for=(KeyError,), max_retries=2: FAILURE KeyError after 3 runs."""
    task_id = ctx.send("autoretry", tag).id
    return [Agree(ctx, task_id, "autoretry"), executed(ctx, tag, 3), attempts(ctx, task_id, 3)]


@case()
def retry_backoff(ctx: Ctx, tag: str) -> list[Step]:
    """retry_backoff (1 s, 2 s), success on the third run."""
    task_id = ctx.send("backoff", tag).id
    return [Agree(ctx, task_id, "backoff"), executed(ctx, tag, 3), attempts(ctx, task_id, 3)]


@case()
def retry_new_exc(ctx: Ctx, tag: str) -> list[Step]:
    """self.retry(exc=OrderError) from an except ValueError: FAILURE OrderError."""
    task_id = ctx.send("retry_new_exc", tag).id
    return [Agree(ctx, task_id, "retry with a new exc"), executed(ctx, tag, 2)]


# -- predicates ----------------------------------------------------------------------------


@case()
def reject_drop(ctx: Ctx, tag: str) -> list[Step]:
    """Reject(requeue=False), acks_late. Celery 5.7 stores FAILURE (Reject) for it
    (worker/request.py, issue #4222): an agreement, not a divergence."""
    task_id = ctx.send("reject_drop", tag).id
    return [Agree(ctx, task_id, "Reject(requeue=False)"), executed(ctx, tag, 1)]


@case()
def reject_requeue(ctx: Ctx, tag: str) -> list[Step]:
    """Reject(requeue=True) twice, then success: three executions, no more."""
    task_id = ctx.send("reject_requeue", tag, 2).id
    return [Agree(ctx, task_id, "Reject(requeue=True) x2"), executed(ctx, tag, 3)]


@case()
def ignore(ctx: Ctx, tag: str) -> list[Step]:
    """raise Ignore(): Celery stores nothing (PENDING); documented: tasktrail SUCCESSFUL,
    result None."""
    task_id = ctx.send("ignore", tag).id
    return [
        Diverge(
            ctx, task_id, "raise Ignore()", until=ran(ctx, tag),
            celery_state=states.PENDING, status=Status.SUCCESSFUL, result=None,
        )
    ]  # fmt: skip


@case()
def update_state_failure_then_ignore(ctx: Ctx, tag: str) -> list[Step]:
    """update_state(FAILURE, exc meta) then raise Ignore(): Celery says FAILURE."""
    task_id = ctx.send("fail_by_hand", tag).id
    return [
        Agree(
            ctx,
            task_id,
            "update_state(FAILURE) + Ignore",
            until=lambda v: v.ready and ran(ctx, tag)(),
        )
    ]


@case()
def update_state_progress(ctx: Ctx, tag: str) -> list[Step]:
    """update_state('PROGRESS', {'current': 3, 'total': 10}) shows as progress 3/10."""
    task_id = ctx.send("report_progress", tag, 3, 10).id
    return [
        Agree(ctx, task_id, "PROGRESS 3/10", until=lambda v: v.state == "PROGRESS"),
        Do("open the gate", lambda: ctx.release(tag)),
        Agree(ctx, task_id, "finished after PROGRESS"),
    ]


@case()
def update_state_custom(ctx: Ctx, tag: str) -> list[Step]:
    """A custom state ('CRUNCHING') counts as RUNNING."""
    task_id = ctx.send("custom_state", tag).id
    return [
        Agree(ctx, task_id, "custom state CRUNCHING", until=lambda v: v.state == "CRUNCHING"),
        Do("open the gate", lambda: ctx.release(tag)),
        Agree(ctx, task_id, "finished after CRUNCHING"),
    ]


@case()
def track_started(ctx: Ctx, tag: str) -> list[Step]:
    """track_started=True: Celery says STARTED while it runs."""
    task_id = ctx.send("tracked_start", tag).id
    return [
        Agree(ctx, task_id, "STARTED", until=lambda v: v.state == states.STARTED),
        Do("open the gate", lambda: ctx.release(tag)),
        Agree(ctx, task_id, "finished after STARTED"),
    ]


@case()
def ignore_result_per_call(ctx: Ctx, tag: str) -> list[Step]:
    """apply_async(ignore_result=True): Celery stays PENDING; documented: tasktrail has
    the outcome."""
    task_id = ctx.send("counted_add", tag, 20, 22, ignore_result=True).id
    return [
        Diverge(
            ctx, task_id, "apply_async(ignore_result=True)", until=ran(ctx, tag),
            celery_state=states.PENDING, status=Status.SUCCESSFUL, result=42,
        )
    ]  # fmt: skip


@case()
def large_result(ctx: Ctx, tag: str) -> list[Step]:
    """A 300 kB result, above TASKTRAIL['MAX_RESULT_BYTES']: Celery's AsyncResult still
    returns all of it (tasktrail never changes what Celery reports); documented: the
    record may hold a truncation marker instead."""
    size = 300_000
    task_id = ctx.send("large", size).id

    def probe() -> list[Row]:
        view = celery_view(ctx.app, task_id)
        rows = []
        if view.state != states.SUCCESS or len(view.result or "") != size:
            got = f"{view.state}, {len(view.result or '')} chars"
            rows.append(Row("AsyncResult", f"SUCCESS, {size} chars", got))
        run = tasktrail_view(task_id)
        if run is None or run.status != Status.SUCCESSFUL:
            rows.append(Row("status", "SUCCESSFUL", ABSENT if run is None else run.status.value))
        elif run.result != view.result and not (
            isinstance(run.result, dict) and run.result.get("truncated") is True
        ):
            rows.append(Row("result", "the result, or a truncation marker", repr(run.result)[:80]))
        return rows

    return [
        WaitFor(
            f"Celery has the large result [{task_id}]", lambda: celery_view(ctx.app, task_id).ready
        ),
        Eventually(ctx, f"large result [{task_id}]", probe, 10.0),
    ]


@case()
def ignore_result(ctx: Ctx, tag: str) -> list[Step]:
    """ignore_result=True: Celery stays PENDING; documented: tasktrail has the outcome."""
    task_id = ctx.send("ignored_result", tag).id
    return [
        Diverge(
            ctx, task_id, "ignore_result=True", until=ran(ctx, tag),
            celery_state=states.PENDING, status=Status.SUCCESSFUL, result=42,
        )
    ]  # fmt: skip


# -- canvas ---------------------------------------------------------------------------------


@case()
def group_of_100(ctx: Ctx, tag: str) -> list[Step]:
    """A group of 100 tasks: every child id."""
    result = group(ctx.sig("add", i, i) for i in range(100)).apply_async()
    return [All(Agree(ctx, r.id, f"group child {i}") for i, r in enumerate(result.results))]


@case("chord")
def chord_(ctx: Ctx, tag: str) -> list[Step]:
    """A chord of 5 adds into tsum: header ids and body id."""
    result = chord([ctx.sig("add", i, i) for i in range(5)], ctx.sig("tsum")).apply_async()
    header = [Agree(ctx, r.id, f"header {i}") for i, r in enumerate(result.parent.results)]
    return [All([*header, Agree(ctx, result.id, "chord body")])]


@case()
def chord_failing_header(ctx: Ctx, tag: str) -> list[Step]:
    """A chord whose header fails: the body never runs, Celery marks it FAILURE
    (ChordError)."""
    header = [ctx.sig("add", 1, 1), ctx.sig("fail", "header boom"), ctx.sig("add", 2, 2)]
    result = chord(header, ctx.sig("tsum")).apply_async()
    steps = [Agree(ctx, r.id, f"header {i}") for i, r in enumerate(result.parent.results)]
    return [All([*steps, Agree(ctx, result.id, "chord body (never runs)")])]


@case("chain")
def chain_(ctx: Ctx, tag: str) -> list[Step]:
    """A chain of three: every step."""
    result = chain(ctx.sig("add", 1, 1), ctx.sig("add", 10), ctx.sig("add", 100)).apply_async()
    return [All(Agree(ctx, i, f"step {n}") for n, i in enumerate(chain_ids(result), 1))]


@case()
def chain_failing_middle(ctx: Ctx, tag: str) -> list[Step]:
    """Step 2 of 4 fails: Celery marks steps 3 and 4 FAILURE without running them."""
    result = chain(
        ctx.sig("add", 1, 1), ctx.sig("fail"), ctx.sig("add", 3), ctx.sig("add", 4)
    ).apply_async()
    ids = chain_ids(result)
    roles = ["step 1", "step 2 (fails)", "step 3 (never runs)", "step 4 (never runs)"]
    return [All(Agree(ctx, i, role) for i, role in zip(ids, roles, strict=True))]


@case()
def link_callback(ctx: Ctx, tag: str) -> list[Step]:
    """A link= callback: the task and its callback."""
    callback_id = f"callback-{uuid.uuid4()}"
    result = ctx.sig("add", 1, 1, link=ctx.sig("add", 100, task_id=callback_id)).apply_async()
    return [All([Agree(ctx, result.id, "linked task"), Agree(ctx, callback_id, "callback")])]


@case()
def link_error(ctx: Ctx, tag: str) -> list[Step]:
    """A failing task with an old-style link_error errback, sent as a task of its own."""
    errback_id = f"errback-{uuid.uuid4()}"
    errback = ctx.sig("handle_error", task_id=errback_id)
    result = ctx.sig("fail", "linked failure", link_error=errback).apply_async()
    return [All([Agree(ctx, result.id, "failing task"), Agree(ctx, errback_id, "errback")])]


@case()
def chain_with_group(ctx: Ctx, tag: str) -> list[Step]:
    """add | group(add, add) | tsum: Celery upgrades the group and tsum to a chord."""
    result = chain(
        ctx.sig("add", 1, 1), group(ctx.sig("add", 10), ctx.sig("add", 20)), ctx.sig("tsum")
    ).apply_async()
    header = result.parent
    steps = [Agree(ctx, r.id, f"group member {i}") for i, r in enumerate(header.results)]
    steps += [
        Agree(ctx, header.parent.id, "first step"),
        Agree(ctx, result.id, "tsum (chord body)"),
    ]
    return [All(steps)]


@case("chunks")
def chunks_(ctx: Ctx, tag: str) -> list[Step]:
    """add.chunks(20 pairs, 5): every celery.starmap chunk id."""
    result = chunks(
        ctx.sig("add"),  # type: ignore[arg-type]
        [(i, i) for i in range(20)],
        5,
        app=ctx.app,
    ).apply_async()
    return [All(Agree(ctx, r.id, f"chunk {i}") for i, r in enumerate(result.results))]


@case()
def starmap(ctx: Ctx, tag: str) -> list[Step]:
    """add.starmap(5 pairs): the celery.starmap id."""
    result = xstarmap(ctx.sig("add"), [(i, i) for i in range(5)], app=ctx.app).apply_async()
    return [Agree(ctx, result.id, "starmap")]


@case()
def replace_with_task(ctx: Ctx, tag: str) -> list[Step]:
    """self.replace(add.s(5, 5)): the replaced id holds the replacement's result."""
    return [Agree(ctx, ctx.send("replace_with_task", 5).id, "replaced by a task")]


@case()
def replace_with_chain(ctx: Ctx, tag: str) -> list[Step]:
    """self.replace(add(1, 1) | add(10)): the replaced id is the chain's last step."""
    first_id = str(uuid.uuid4())
    task_id = ctx.send("replace_with_chain", first_id).id
    return [All([Agree(ctx, first_id, "replacement step 1"), Agree(ctx, task_id, "replaced id")])]


@case()
def replace_with_group(ctx: Ctx, tag: str) -> list[Step]:
    """self.replace(group(...)): uplifted to a chord whose body takes the replaced id."""
    child_ids = [str(uuid.uuid4()) for _ in range(3)]
    task_id = ctx.send("replace_with_group", child_ids).id
    children = [Agree(ctx, c, f"replacement child {i}") for i, c in enumerate(child_ids)]
    return [All([*children, Agree(ctx, task_id, "replaced id")])]


# -- in-process ---------------------------------------------------------------------------


def _eager(ctx: Ctx, result: Any, role: str) -> Step:
    return Agree(ctx, result.id, role, view=lambda: eager_view(result))


@case()
def apply_in_process(ctx: Ctx, tag: str) -> list[Step]:
    """task.apply(): runs here, Celery's answer is the EagerResult."""
    ok = ctx.app.tasks[ctx.name("add")].apply(args=(20, 22))
    failed = ctx.app.tasks[ctx.name("fail")].apply(args=("applied failure",))
    return [All([_eager(ctx, ok, "apply() success"), _eager(ctx, failed, "apply() failure")])]


@case()
def always_eager(ctx: Ctx, tag: str) -> list[Step]:
    """task_always_eager=True in this process: apply_async runs here (a task, a
    failure, a chain)."""
    before = ctx.app.conf.task_always_eager
    ctx.app.conf.task_always_eager = True
    try:
        ok = ctx.sig("add", 3, 4).apply_async()
        failed = ctx.sig("fail", "eager failure").apply_async()
        last = chain(ctx.sig("add", 1, 1), ctx.sig("add", 10)).apply_async()
    finally:
        ctx.app.conf.task_always_eager = before
    steps = [_eager(ctx, ok, "eager success"), _eager(ctx, failed, "eager failure")]
    steps += [
        _eager(ctx, last.parent, "eager chain step 1"),
        _eager(ctx, last, "eager chain step 2"),
    ]
    return [All(steps)]


# -- names, ids, options ---------------------------------------------------------------


@case()
def unregistered(ctx: Ctx, tag: str) -> list[Step]:
    """send_task of a name no worker knows: FAILURE NotRegistered."""
    result = ctx.app.send_task(ctx.name("no_such_task"), args=(1,))
    return [Agree(ctx, result.id, "no_such_task")]


@case()
def priorities(ctx: Ctx, tag: str) -> list[Step]:
    """priority=0, 3, 6, 9."""
    results = [ctx.send("add", p, p, priority=p) for p in (0, 3, 6, 9)]
    return [
        All(Agree(ctx, r.id, f"priority {p}") for p, r in zip((0, 3, 6, 9), results, strict=True))
    ]


@case()
def non_uuid_id(ctx: Ctx, tag: str) -> list[Step]:
    """task_id='order-1-...'."""
    return [Agree(ctx, ctx.send("add", 1, 1, task_id=f"order-1-{tag}").id, "order-1")]


@case()
def odd_id(ctx: Ctx, tag: str) -> list[Step]:
    """A task id with a slash, spaces, '?', '#', '%' and non-ASCII letters."""
    task_id = f"ordre/1 ü ? #frag %20 {tag}"
    return [Agree(ctx, ctx.send("add", 1, 1, task_id=task_id).id, "odd id")]


@case()
def reused_id(ctx: Ctx, tag: str) -> list[Step]:
    """The same id published again after it finished: a new generation."""
    task_id = f"reused-{tag}"
    ctx.send("counted_add", tag, 1, 1, task_id=task_id)
    return [
        Agree(ctx, task_id, "generation 1 (2)"),
        Do("publish generation 2", lambda: ctx.send("counted_add", tag, 2, 2, task_id=task_id)),
        Agree(ctx, task_id, "generation 2 (4)", until=lambda v: v.ready and v.result == 4),
        executed(ctx, tag, 2),
    ]


@case()
def reused_id_after_failure(ctx: Ctx, tag: str) -> list[Step]:
    """An id that failed, published again, succeeds: no stale error on the record."""
    task_id = f"reused-failed-{tag}"
    ctx.send("counted_fail", tag, task_id=task_id)
    return [
        Agree(ctx, task_id, "generation 1 (fails)"),
        Do("publish generation 2", lambda: ctx.send("counted_add", tag, 2, 2, task_id=task_id)),
        Agree(ctx, task_id, "generation 2 (succeeds)", until=lambda v: v.state == states.SUCCESS),
        executed(ctx, tag, 2),
    ]


# -- runs that can never run ---------------------------------------------------------------


@case()
def failed_publish(ctx: Ctx, tag: str) -> list[Step]:
    """apply_async with an argument kombu cannot encode raises EncodeError: no READY
    record may be left beyond TASKTRAIL['STALE_READY_AFTER']."""
    task_id = f"unpublished-{tag}"
    try:
        ctx.send("add", object(), 1, task_id=task_id)
    except EncodeError:
        pass
    else:
        raise AssertionError("publishing an object() did not raise EncodeError")

    def probe() -> list[Row]:
        rows = pending_or_agreeing(ctx.app, task_id)
        run = tasktrail_view(task_id)
        if run is not None and run.status == Status.READY:
            rows.append(Row("status", "no record, or settled", "READY"))
        return rows

    return [Eventually(ctx, f"no READY record left [{task_id}]", probe, stale_ready_bound())]


@case()
def purged_queue(ctx: Ctx, tag: str) -> list[Step]:
    """A message purged from a queue nobody consumes: the record is settled (FAILED or
    CANCELLED) within the sweep's bound."""
    orphan = f"{ctx.queue}-orphan-{tag}"
    task_id = ctx.app.send_task(ctx.name("add"), args=(1, 1), queue=orphan).id
    with ctx.app.connection_for_write() as conn:
        purged = conn.default_channel.queue_purge(orphan)
    if purged != 1:
        raise AssertionError(f"purging {orphan} removed {purged} message(s), not 1")

    def probe() -> list[Row]:
        rows = pending_or_agreeing(ctx.app, task_id)
        run = tasktrail_view(task_id)
        status = ABSENT if run is None else run.status.value
        if status not in (Status.FAILED, Status.CANCELLED):
            rows.append(Row("status", "FAILED or CANCELLED (settled)", status))
        return rows

    return [Eventually(ctx, f"purged run settled [{task_id}]", probe, stale_ready_bound())]
