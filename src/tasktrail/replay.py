"""Replay a finished run with edited arguments, as a new run linked by ``retry_of``.

The edit is checked before anything is published: arguments must be JSON (a list and
an object, finite numbers only), must not still hold the redaction marker or a cut
marker (those stand for values the record never kept), and must bind to the task's
signature. A refused edit raises :class:`ReplayRefused` saying what to fix.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from dataclasses import replace as with_fields
from typing import Any

from celery import current_app

from . import audit
from .actions import ActionRefused, publish_as_retry
from .conf import settings
from .exceptions import RunNotFound, TasktrailError
from .redaction import HIDDEN, capped_json, redact, redact_call
from .runs import Run, get_run
from .status import Status
from .transitions import dumps

REPLAYABLE = (Status.FAILED, Status.CANCELLED, Status.SUCCESSFUL)
MAX_DEPTH = 100  # levels of nested lists and objects an edit may have


class ReplayRefused(ActionRefused):
    """The edited arguments cannot be replayed; the message says what to fix."""


# Where a run name that is not a Celery task's finds its parameters: an integration that
# runs many functions through one Celery task (tasktrail.contrib.django_tasks) registers
# one. Each returns the signature the run's arguments bind to, or None if not its own.
SignatureSource = Callable[[str], inspect.Signature | None]
_signature_sources: list[SignatureSource] = []


def register_signature_source(source: SignatureSource) -> None:
    if source not in _signature_sources:
        _signature_sources.append(source)


def _no_constant(name: str) -> Any:
    raise ReplayRefused(
        f"{name} is not a JSON number (JSON has no NaN or Infinity); use null, or the "
        "number as a string."
    )


def parse_arguments(args_text: str | None, kwargs_text: str | None) -> tuple[Any, Any]:
    """The arguments typed as JSON text (a blank box is ``[]``/``{}``; None stays None:
    :func:`replay` takes the stored value then)."""
    return _loads(args_text, "Positional arguments", "[]"), _loads(
        kwargs_text, "Keyword arguments", "{}"
    )


def _loads(text: str | None, label: str, blank: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text.strip() or blank, parse_constant=_no_constant)
    except ValueError as exc:  # not JSON, or a number Python will not read (4,300+ digits)
        raise ReplayRefused(f"{label} are not valid JSON: {exc}.") from None
    except RecursionError:
        raise ReplayRefused(f"{label} are nested too deeply to read.") from None


def _is_cut(value: Any) -> bool:
    """The marker ``capped_json`` stores in place of arguments over the size limit."""
    return isinstance(value, dict) and set(value) == {"truncated", "bytes", "preview"}


def _json_problem(value: Any, where: str, depth: int = 0) -> str | None:
    if depth > MAX_DEPTH:  # redaction, the record and the broker all recurse over it
        return f"{where} is nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, str) and "\x00" in value:
        return f"{where} holds a NUL character, which the database cannot store"
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{where} is {value}, which JSON cannot carry: use null, or the number as a string"
    if isinstance(value, list):
        found = (_json_problem(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        return next((problem for problem in found if problem), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}: JSON object keys are strings"
            if "\x00" in key:
                return f"{where} has a key with a NUL character, which the database cannot store"
            if problem := _json_problem(item, f"{where}[{key!r}]", depth + 1):
                return problem
        return None
    return f"{where} is a {type(value).__name__}, which is not JSON: pass plain data"


def _markers(value: Any, where: str) -> list[str]:
    """Where the redaction marker still stands (in a value or a key)."""
    if isinstance(value, str):
        return [where] if HIDDEN in value else []
    if isinstance(value, list):
        return [spot for i, item in enumerate(value) for spot in _markers(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        found = [f"{where} (a key)" for key in value if HIDDEN in str(key)]
        return found + [spot for k, v in value.items() for spot in _markers(v, f"{where}[{k!r}]")]
    return []


def signature_of(task_name: str) -> inspect.Signature | None:
    """The parameters a run of ``task_name`` takes (a bound task's without ``self``),
    None if they cannot be read; raises :class:`ReplayRefused` for an unknown task."""
    task = current_app.tasks.get(task_name)
    if task is None:
        for source in _signature_sources:
            if (found := source(task_name)) is not None:
                return found
        raise ReplayRefused(
            f"No task named {task_name!r} is registered in this process's Celery app, so its "
            "arguments cannot be checked; import the module that defines it here."
        )
    try:  # a bind=True task's run is a bound method: no self in its signature
        return inspect.signature(task.run)
    except (TypeError, ValueError):
        return None


def check_arguments(task_name: str, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """``args`` and ``kwargs`` if they can be replayed; else :class:`ReplayRefused`."""
    for label, value in (("Positional arguments", args), ("Keyword arguments", kwargs)):
        if _is_cut(value):
            raise ReplayRefused(
                f"{label} were cut when stored (over MAX_ARGUMENT_BYTES); only a preview "
                "was kept. Enter them in full."
            )
    if not isinstance(args, list | tuple):
        raise ReplayRefused(f"Positional arguments must be a JSON list, not {_kind(args)}.")
    if not isinstance(kwargs, dict):
        raise ReplayRefused(f"Keyword arguments must be a JSON object, not {_kind(kwargs)}.")
    args = list(args)
    problem = _json_problem(args, "args") or _json_problem(kwargs, "kwargs")
    if problem:
        raise ReplayRefused(f"{problem}.")
    if spots := _markers(args, "args") + _markers(kwargs, "kwargs"):
        raise ReplayRefused(
            f"{', '.join(spots)} still hold{'s' if len(spots) == 1 else ''} the redaction "
            f"marker {HIDDEN}: the stored value was hidden, not kept. Re-enter the real value."
        )
    signature = signature_of(task_name)
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ReplayRefused(
                f"The arguments do not fit {task_name}{_plain(signature)}: {exc}."
            ) from None
    return args, kwargs


def _plain(signature: inspect.Signature) -> inspect.Signature:
    """The signature without annotations, as people read it: ``(x, y=0, *rest)``."""
    empty = inspect.Parameter.empty
    parameters = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return signature.replace(parameters=parameters, return_annotation=empty)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "that")


def _as_stored(task_name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the record stores them: secrets hidden, oversized values cut."""
    safe_args, safe_kwargs, _ = redact_call(task_name, args, kwargs)
    limit = int(settings.MAX_ARGUMENT_BYTES)
    return {
        "args": json.loads(capped_json(safe_args, limit, dumps)),
        "kwargs": json.loads(capped_json(safe_kwargs, limit, dumps)),
    }


def replay(
    run_id: str,
    args: Any = None,
    kwargs: Any = None,
    *,
    actor: Any = None,
    address: str | None = None,
) -> Run:
    """Run a finished run again with ``args``/``kwargs`` (None: the stored ones) as a
    new run linked by ``retry_of``; return the new run. Nothing is published when the
    run has not finished (:class:`ActionRefused`) or the arguments do not pass
    :func:`check_arguments` (:class:`ReplayRefused`)."""
    run = get_run(run_id)
    if run.status not in REPLAYABLE:
        raise ActionRefused(
            f"Only finished runs (failed, cancelled or successful) can be replayed; "
            f"{run_id} is {run.status}."
        )
    args, kwargs = check_arguments(
        run.task,
        (run.args or []) if args is None else args,
        (run.kwargs or {}) if kwargs is None else kwargs,
    )
    # The republishers read the arguments off the run they are given.
    new_id = publish_as_retry(with_fields(run, args=args, kwargs=kwargs))
    before = {"args": redact(run.args), "kwargs": redact(run.kwargs)}
    after = _as_stored(run.task, args, kwargs)
    audit.record(
        "replay", actor, address, run_id=run_id, new_run=new_id, before=before, after=after
    )
    try:
        return get_run(new_id)
    except RunNotFound:
        raise TasktrailError(
            f"Replay of {run_id} was published as {new_id} but not recorded."
        ) from None
