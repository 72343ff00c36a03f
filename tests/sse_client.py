"""A minimal Server-Sent Events reader over httpx, for the stream tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    id: str
    kind: str
    data: dict[str, Any]


@dataclass
class Comment:
    text: str


def read(response: httpx.Response) -> Iterator[Event | Comment]:
    """Yield events and comments as they arrive."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Comment(line[1:].strip())
        elif line == "":
            if "data" in fields:
                yield Event(
                    fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
