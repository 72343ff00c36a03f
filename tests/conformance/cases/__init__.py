"""The matrix: one case per Celery behaviour, by theme.

A case publishes its work through a :class:`Ctx` (one worker variant: its app, its
queue) and returns the steps that judge it: for every task id involved, including ids
Celery marks but never runs, tasktrail's record must agree with Celery's own answer
(:class:`~tests.conformance.judge.Agree`), or show a documented divergence where Celery
stores nothing (:class:`~tests.conformance.judge.Diverge`). Cases are launched all at
once and judged concurrently; none of them sleeps.
"""

from __future__ import annotations

# Each theme registers its cases in CASES when it is imported.
from . import (  # noqa: F401
    canvas,
    identity,
    inprocess,
    outcomes,
    predicates,
    retries,
    timing,
    unrunnable,
)
from .base import CASES, Case, Ctx

__all__ = ["CASES", "Case", "Ctx"]
