"""Event payloads (one ``TypedDict`` per kind) and the frames that carry them.

Events are stored once per stream in Redis and published on the stream's channel
as ``id \\x1f kind \\x1f json [\\x1f owner \\x1f team]``; a :class:`Frame` is that
message parsed once and rendered once as Server-Sent Events bytes, whatever the
number of clients it goes to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, NotRequired, TypedDict

from .status import FINISHED

EventKind = Literal["state", "progress", "feed", "result"]


class ErrorPayload(TypedDict):
    type: str
    message: str


class StateEvent(TypedDict):
    kind: Literal["state"]
    run: str
    status: str
    attempts: int
    at: float
    task: NotRequired[str]
    worker: NotRequired[str]
    next_attempt_at: NotRequired[float | None]
    error: NotRequired[ErrorPayload]
    reason: NotRequired[str]


class ProgressEvent(TypedDict):
    kind: Literal["progress"]
    run: str
    current: float
    total: NotRequired[float | None]
    percent: NotRequired[float | None]
    message: NotRequired[str]


class FeedEvent(TypedDict):
    kind: Literal["feed"]
    run: str
    message: str
    level: Literal["info", "success", "warning", "error"]
    ts: float


class ResultEvent(TypedDict):
    kind: Literal["result"]
    run: str
    result: Any


_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}", re.ASCII)
_ID_PART_MAX = 2**64 - 1
# The id of the last word about a finished run whose event log has expired: a client
# that resumes from it has seen the end (it gets 204, so an EventSource stops).
END_ID = f"{_ID_PART_MAX}-{_ID_PART_MAX - 1}"


def parse_id(event_id: str) -> tuple[int, int]:
    """A Redis stream id as a sortable pair; raises ``ValueError`` for anything Redis
    would not take as the exclusive start of a range (ASCII digits, 64-bit parts, and
    not the very last id)."""
    if not _ID.fullmatch(event_id):
        raise ValueError(f"not an event id: {event_id!r}")
    ms, seq = (int(part) for part in event_id.split("-"))
    if ms > _ID_PART_MAX or seq > _ID_PART_MAX or (ms, seq) == (_ID_PART_MAX, _ID_PART_MAX):
        raise ValueError(f"event id out of range: {event_id!r}")
    return ms, seq


@dataclass(frozen=True)
class Frame:
    id: str
    kind: str
    body: str
    owner: str = ""
    team: str = ""
    order: tuple[int, int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", parse_id(self.id))

    @classmethod
    def from_message(cls, data: bytes) -> Frame:
        parts = data.decode().split("\x1f", 4)
        return cls(*parts)

    @classmethod
    def from_entry(cls, entry_id: bytes | str, values: dict[bytes, bytes]) -> Frame:
        text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        get = values.get
        return cls(
            text,
            (get(b"kind") or b"").decode(),
            (get(b"data") or b"{}").decode(),
            (get(b"owner") or b"").decode(),
            (get(b"team") or b"").decode(),
        )

    @cached_property
    def is_terminal(self) -> bool:
        if self.kind != "state":
            return False
        try:
            status = json.loads(self.body).get("status")
        except (ValueError, AttributeError):
            return False  # a state event nobody can read ends nothing
        return status in FINISHED

    @cached_property
    def run(self) -> str:
        return str(json.loads(self.body).get("run", ""))

    @cached_property
    def sse(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.body}\n\n".encode()
