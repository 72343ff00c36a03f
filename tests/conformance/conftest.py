"""Worker variants of the conformance tier, started once per session and shared.

By default two variants run on the tests' Redis broker: ``prefork`` and ``threads``.
``TASKTRAIL_CONFORMANCE_FULL=1`` adds ``solo`` on Redis and ``prefork``/``threads`` on
RabbitMQ (``TASKTRAIL_CONFORMANCE_AMQP``, default ``amqp://guest:guest@127.0.0.1:5672//``).
The ``control`` variant runs Celery's stock Redis result backend, for the control test.

Every variant consumes a queue of its own, so it never takes the session worker's
messages, and the workers of all requested variants start at the same time. The first
test to ask for a verdict launches every selected case in every variant at once; the
judge then advances them all together (see ``judge.py``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.conf import settings

from tests.conftest import _child_env, _stop

from .apps import BACKEND_ENV, QUEUE_ENV, make_app
from .cases import CASES, Case, Ctx
from .judge import Judge, Plan
from .tasks import redis_client

ROOT = Path(__file__).resolve().parents[2]
STOCK_BACKEND = os.environ.get("TASKTRAIL_CONFORMANCE_STOCK_BACKEND", "redis://127.0.0.1:6379/9")
AMQP_BROKER = os.environ.get("TASKTRAIL_CONFORMANCE_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


@dataclass(frozen=True)
class Variant:
    name: str
    pool: str
    concurrency: int
    broker: str | None = None  # None: the tests' broker (settings.CELERY_BROKER_URL)
    backend: str | None = None  # None: the tests' result backend (tasktrail's)

    def __str__(self) -> str:
        return self.name


DEFAULT_VARIANTS = [Variant("prefork", "prefork", 4), Variant("threads", "threads", 8)]
FULL_VARIANTS = [
    *DEFAULT_VARIANTS,
    Variant("solo", "solo", 1),
    Variant("prefork-amqp", "prefork", 4, broker=AMQP_BROKER),
    Variant("threads-amqp", "threads", 8, broker=AMQP_BROKER),
]
VARIANTS = (
    FULL_VARIANTS if os.environ.get("TASKTRAIL_CONFORMANCE_FULL") == "1" else DEFAULT_VARIANTS
)
CONTROL = Variant("control", "threads", 8, backend=STOCK_BACKEND)
# The tasktrail side of the control comparison runs on this variant's worker.
CONTROL_PARTNER = DEFAULT_VARIANTS[1]


def plan_name(variant: Variant, case: Case | str, group: str = "matrix") -> str:
    return f"{group}:{variant.name}:{case if isinstance(case, str) else case.name}"


@dataclass
class Worker:
    variant: Variant
    hostname: str
    queue: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        _stop(self.process)
        # Prefork children outlive a main process killed after its grace: end the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Stage:
    """The workers, one app per variant in this process, and the judge."""

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.contexts: dict[str, Ctx] = {}
        self.judge = Judge()
        self.launched: set[str] = set()

    @staticmethod
    def queue(variant: Variant) -> str:
        return f"{settings.TASKTRAIL['KEY_PREFIX']}-conf-{variant.name}"

    @staticmethod
    def hostname(variant: Variant) -> str:
        return f"conf-{variant.name}-{os.getpid()}@{socket.gethostname()}"

    def app(self, variant: Variant) -> Celery:
        return make_app(
            f"conformance-{variant.name}",
            queue=self.queue(variant),
            broker=variant.broker,
            backend=variant.backend,
        )

    def start(self, variants: list[Variant]) -> None:
        """Start every worker not yet running, all at once, and wait until each answers
        a ping."""
        new = [v for v in variants if v.name not in self.workers]
        for variant in new:
            self.workers[variant.name] = self._spawn(variant)
        for variant in new:
            self._wait_ready(self.workers[variant.name])

    def _spawn(self, variant: Variant) -> Worker:
        queue, hostname = self.queue(variant), self.hostname(variant)
        env = _child_env()
        env[QUEUE_ENV] = queue
        if variant.broker:
            env["TASKTRAIL_TEST_BROKER"] = variant.broker
        if variant.backend:
            env[BACKEND_ENV] = variant.backend
        log = ROOT / "tests" / f".{settings.TASKTRAIL['KEY_PREFIX']}.conf-{variant.name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "tests.conformance.celery_app",
                    "worker", "-P", variant.pool, "-c", str(variant.concurrency),
                    "-Q", queue, "-n", hostname, "-l", "info",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                ],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: teardown reaches the pool
            )  # fmt: skip
        return Worker(variant, hostname, queue, process, log)

    def _wait_ready(self, worker: Worker) -> None:
        app = self.ctx(worker.variant).app
        deadline = time.monotonic() + 180  # a loaded 2-core machine starts workers slowly
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.hostname} exited; see {worker.log}")
            if app.control.ping(destination=[worker.hostname], timeout=0.5):
                return
        raise RuntimeError(f"worker {worker.hostname} did not answer a ping; see {worker.log}")

    def ctx(self, variant: Variant, *, observe_only: bool = False) -> Ctx:
        key = f"{variant.name}:{observe_only}"
        if key not in self.contexts:
            self.contexts[key] = Ctx(
                variant.name,
                variant.pool,
                self.app(variant),
                self.queue(variant),
                self.hostname(variant),
                observe_only,
            )
        return self.contexts[key]

    def launch(self, name: str, ctx: Ctx, case: Case) -> None:
        if name in self.launched:
            return
        self.launched.add(name)
        plan = Plan(name)
        try:
            plan.steps.extend(case.launch(ctx, ctx.tag(case.name)))
        except AssertionError as exc:  # a precondition the case states itself
            plan.fail(f"cannot launch {case.name}: {exc}")
        except Exception:  # a case that cannot even launch fails alone
            plan.fail(f"launching {case.name} raised:\n{traceback.format_exc()}")
        self.judge.add(plan)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        # Results still referenced by plans unsubscribe when collected: let them do it
        # now, before their backend's pubsub connection is closed for good.
        self.judge.plans.clear()
        gc.collect()
        for ctx in self.contexts.values():
            backend: Any = ctx.app.backend
            consumer = getattr(backend, "result_consumer", None)
            if consumer is not None:
                consumer.stop()  # its pubsub connection, opened when a result is ready
                # Results Celery still holds (chords: ``then()``) would reconnect to
                # unsubscribe when collected, after the session: nothing left to drop.
                consumer.subscribed_to.clear()
            if getattr(backend, "client", None) is not None:
                backend.client.connection_pool.disconnect()
            ctx.app.close()
        redis_client().close()


def selected(session: pytest.Session, group: str) -> list[tuple[Variant, Case]]:
    """The (variant, case) pairs of this group the session will run (after -k, skips)."""
    pairs = []
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("group") == group and not item.get_closest_marker("skip"):
            pairs.append((params["variant"], params["case"]))
    return pairs


@pytest.fixture(scope="session")
def stage(django_db_setup: None, django_db_blocker: Any) -> Iterator[Stage]:
    stage = Stage()
    try:
        yield stage
    finally:
        stage.stop()


@pytest.fixture
def matrix(request: pytest.FixtureRequest, stage: Stage, django_db_blocker: Any) -> Judge:
    """Starts the workers and launches every selected matrix case, the first time."""
    pairs = selected(request.session, "matrix")
    stage.start(sorted({v for v, _ in pairs}, key=VARIANTS.index))
    with django_db_blocker.unblock():
        for variant, case in pairs:
            stage.launch(plan_name(variant, case), stage.ctx(variant), case)
    return stage.judge


def case_params(group: str, names: list[str] | None = None) -> list[Any]:
    params = []
    variants = VARIANTS if group == "matrix" else [CONTROL]
    for variant in variants:
        for case in CASES.values():
            if names is not None and case.name not in names:
                continue
            marks = []
            if case.pools is not None and variant.pool not in case.pools:
                marks.append(pytest.mark.skip(reason=case.why_not))
            params.append(
                pytest.param(group, variant, case, id=f"{variant.name}:{case.name}", marks=marks)
            )
    return params
