"""Secrets never reach the record: values of sensitive argument names are hidden before
arguments and feed lines are stored, and oversized values are cut with a visible marker.

Names come from ``TASKTRAIL["REDACT_ARGUMENTS"]`` (substrings, any case). Positional
arguments are matched to names through the task's signature when the task is known in
the publishing process.
"""

from __future__ import annotations

import inspect
import json
import re
from functools import lru_cache
from typing import Any

from . import naming
from .conf import settings

HIDDEN = "••••••"


def _patterns() -> tuple[str, ...]:
    return tuple(str(p).lower() for p in settings.REDACT_ARGUMENTS)


def is_sensitive(name: object, patterns: tuple[str, ...] | None = None) -> bool:
    lowered = str(name).lower()
    return any(p in lowered for p in (patterns if patterns is not None else _patterns()))


def redact(value: Any) -> Any:
    """``value`` with the values of sensitive keys hidden, at any depth."""
    return _redact(value, _patterns())


def _redact(value: Any, patterns: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {
            key: HIDDEN if is_sensitive(key, patterns) else _redact(item, patterns)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, patterns) for item in value]
    return value


def redact_call(
    task_name: str, args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any], bool]:
    """The arguments as they may be stored, and whether anything was hidden."""
    patterns = _patterns()
    names = _parameter_names(task_name)
    safe_args = [
        HIDDEN
        if index < len(names) and is_sensitive(names[index], patterns)
        else _redact(value, patterns)
        for index, value in enumerate(args)
    ]
    safe_kwargs = _redact(kwargs, patterns)
    return safe_args, safe_kwargs, safe_args != list(args) or safe_kwargs != kwargs


def _parameter_names(task_name: str) -> tuple[str, ...]:
    function = naming.function(task_name)
    if function is None:
        return ()
    try:
        # inspect.signature costs more than the rest of a publish's redaction; a
        # function's parameters do not change (a redefined function is another object).
        return _cached_signature_names(function)
    except TypeError:  # an unhashable callable
        return _signature_names(function)


def _signature_names(function: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return ()


_cached_signature_names = lru_cache(maxsize=1024)(_signature_names)


_SECRET_IN_TEXT = re.compile(
    r"""(?P<name>[\w-]+)(?P<sep>["']?\s*[:=]\s*["']?)(?P<value>[^\s,;&"'}]+)"""
)


def redact_text(text: str) -> str:
    """A feed line with ``password=...``/``"token": "..."`` values hidden."""
    patterns = _patterns()

    def hide(match: re.Match[str]) -> str:
        if is_sensitive(match["name"], patterns):
            return f"{match['name']}{match['sep']}{HIDDEN}"
        return match[0]

    return _SECRET_IN_TEXT.sub(hide, text)


def capped_json(value: Any, limit: int, dumps: Any) -> str:
    """``value`` as JSON, or a marker saying it was cut when it is over ``limit`` bytes."""
    text: str = dumps(value)
    size = len(text.encode())
    if size > limit:
        return json.dumps({"truncated": True, "bytes": size, "preview": text[:200]})
    return text
