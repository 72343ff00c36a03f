"""Trace ids from a Celery message's headers, for linking a run to its trace.

Reads the W3C ``traceparent`` header (what OpenTelemetry's Celery instrumentation
injects) and Sentry's ``sentry-trace``. Only the header text is parsed: the core needs
neither OpenTelemetry nor Sentry installed, and a malformed header is ignored, never an
error on the task's path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .conf import settings

# version-traceid-parentid-flags; all-zero ids are invalid by the W3C spec.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# traceid-spanid[-sampled]
_SENTRY_TRACE = re.compile(r"^([0-9a-f]{32})-([0-9a-f]{16})(?:-[01])?$")
HEADERS = (("traceparent", _TRACEPARENT), ("sentry-trace", _SENTRY_TRACE))


def _valid(trace_id: str, span_id: str) -> bool:
    return trace_id.strip("0") != "" and span_id.strip("0") != ""


def trace_fields(read: Callable[[str], Any]) -> dict[str, str]:
    """``{"trace_id": ..., "span_id": ...}`` from the first usable header, or ``{}``.

    ``read`` returns a header's value by name (``headers.get``, or ``getattr`` on a
    task request). The span id is the one that published the message.
    """
    for name, pattern in HEADERS:
        value = read(name)
        if not isinstance(value, str) or len(value) > 128:
            continue
        match = pattern.match(value.strip().lower())
        if match is not None and _valid(match[1], match[2]):
            return {"trace_id": match[1], "span_id": match[2]}
    return {}


def from_request(request: Any) -> dict[str, str]:
    """Trace fields of a running task's request (its message headers are attributes)."""
    return trace_fields(lambda name: getattr(request, name, None))


def trace_url(trace_id: str, span_id: str = "") -> str:
    """The run's link into the tracing UI (``TRACE_URL``), or '' when none is set."""
    template = settings.TRACE_URL
    if not template or not trace_id:
        return ""
    return str(template).replace("{trace_id}", trace_id).replace("{span_id}", span_id)
