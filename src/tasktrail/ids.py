"""Run ids in URLs. Celery takes any string as a task id (``"order-1"``, a UUID, a
path); each must reach the HTTP API and the dashboard, and come back unchanged.

An id that is safe as one path segment goes as it is. One that is not (it has a
``/``, is ``.`` or ``..``, or starts with the escape mark ``~``) goes as ``~`` and its
UTF-8 in unpadded URL-safe base64. Registered as the path converter ``runid``.
"""

from __future__ import annotations

import base64
import binascii

MAX_LENGTH = 255  # TaskRun.id's column
ESCAPE = "~"


def is_valid(run_id: str) -> bool:
    """An id tasktrail can hold: 1 to 255 characters, none of them a control character."""
    return 0 < len(run_id) <= MAX_LENGTH and all(c.isprintable() for c in run_id)


def to_segment(run_id: str) -> str:
    if "/" in run_id or run_id in (".", "..") or run_id.startswith(ESCAPE):
        encoded = base64.urlsafe_b64encode(run_id.encode()).decode().rstrip("=")
        return ESCAPE + encoded
    return run_id


def from_segment(segment: str) -> str:
    """The id a path segment names; raises ``ValueError`` for a malformed escape."""
    if not segment.startswith(ESCAPE):
        return segment
    body = segment[len(ESCAPE) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"Malformed escaped run id {segment!r}.") from exc


class RunIdConverter:
    """``<runid:run_id>``: any run id, escaped where a path segment cannot hold it."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        try:
            run_id = from_segment(value)
        except ValueError:
            return ""  # not a valid id: the view answers 400, not a bare 404
        # A NUL or over-long id never reaches a lookup (PostgreSQL refuses NUL outright).
        return run_id if is_valid(run_id) else ""

    def to_url(self, value: str) -> str:
        return to_segment(str(value))


def register_converter() -> None:
    """Register ``runid`` once (both URL modules call this)."""
    from django.urls import converters, register_converter

    if "runid" not in converters.get_converters():
        register_converter(RunIdConverter, "runid")
