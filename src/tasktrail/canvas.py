"""Chains and groups through ``enqueue()``: one call, tracked members, one owner.

``enqueue(chain(a.s(1), b.s()))`` returns the run of the chain's first step (the root
of the family: every later step links to it by ``root_id`` and appears when Celery
publishes it). ``enqueue(group(...))`` returns a :class:`RunGroup` whose progress is
how many members have finished. Owner, team and subject go to every member.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery import current_app
from celery.canvas import Signature, _chain, chord, chunks, group
from django.db import transaction

from .receivers import publish_context
from .records import Progress, to_datetime
from .runs import Run, find_run
from .status import FINISHED, Status


@dataclass(frozen=True, kw_only=True)
class RunGroup:
    """The runs of one Celery group; ``progress`` counts finished members."""

    id: str
    run_ids: tuple[str, ...]

    def runs(self) -> list[Run | None]:
        """Each member's run (``None`` for one not recorded yet, e.g. before a commit)."""
        return [find_run(run_id) for run_id in self.run_ids]

    def progress(self) -> Progress:
        done = sum(1 for run in self.runs() if run is not None and run.status in FINISHED)
        return Progress(
            current=done, total=len(self.run_ids), message=f"{done} of {len(self.run_ids)} done"
        )

    def wait(self, timeout: float = 30.0) -> list[Run]:
        deadline = time.monotonic() + timeout
        runs: list[Run] = []
        for run_id in self.run_ids:
            run = find_run(run_id)
            while run is None:  # published on commit, or just now
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Run {run_id} of group {self.id} was never recorded.")
                time.sleep(0.05)
                run = find_run(run_id)
            runs.append(run.wait(max(0.1, deadline - time.monotonic())))
        return runs


def _members(signature: Signature) -> list[Signature]:
    if isinstance(signature, _chain | group):
        return [m for task in signature.tasks for m in _members(task)]
    return [signature]


def _validate(signature: Signature, *, complete: bool) -> None:
    from .enqueueing import validate_arguments

    task = current_app.tasks.get(signature.task) if signature.task else None
    if task is None:
        raise TypeError(f"Unknown task {signature.task!r}: import its module before enqueue().")
    if complete:
        validate_arguments(task, tuple(signature.args), dict(signature.kwargs))
    else:  # a later chain step also receives the previous step's result
        validate_arguments(task, (None, *signature.args), dict(signature.kwargs))


def _apply_chain_eagerly(signature: _chain, options: dict[str, Any]) -> None:
    """Celery's eager chain runs every step under the chain's one id; run each step
    under its own frozen id instead, so each step's run is the one a worker would make.
    A failed step raises here, as Celery's eager chain raises to its caller."""
    previous: Any = None
    for step in signature.tasks:
        arguments = () if previous is None or step.immutable else (previous.get(),)
        previous = step.clone(arguments).apply(**options)
    if previous is not None:
        previous.get()


def enqueue_canvas(
    signature: Signature, context: dict[str, str], celery_options: dict[str, Any]
) -> Run | RunGroup:
    if isinstance(signature, chunks):
        # Celery publishes chunks as a group of starmaps: hand out the ids it publishes.
        signature = signature.group()
    if isinstance(signature, chord):
        raise TypeError(
            "enqueue() takes chains and groups; for a chord, enqueue its group and body."
        )
    if isinstance(signature, _chain):
        steps = _members(signature)
        for index, step in enumerate(steps):
            _validate(step, complete=index == 0 or step.immutable)
    else:
        for member in _members(signature):
            _validate(member, complete=True)
    signature.freeze()

    def publish() -> None:
        token = publish_context.set(context)
        try:
            if isinstance(signature, _chain) and current_app.conf.task_always_eager:
                _apply_chain_eagerly(signature, celery_options)
            else:
                signature.apply_async(**celery_options)
        finally:
            publish_context.reset(token)

    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(publish)
    else:
        publish()
    if isinstance(signature, group):
        return RunGroup(id=str(signature.id), run_ids=tuple(str(m.id) for m in signature.tasks))
    first = _members(signature)[0]
    return find_run(str(first.id)) or Run(
        id=str(first.id),
        task=str(first.task),
        status=Status.READY,
        progress=Progress(),
        enqueued_at=to_datetime(str(time.time())),
        owner_id=context.get("owner"),
        team=context.get("team", ""),
        subject=context.get("subject", ""),
        args=list(first.args),
        kwargs=dict(first.kwargs),
    )
