"""Live events written to a stream's client by the hub itself.

A stream waiting for events costs nothing per event: while its task waits idle, the
hub's reader writes each new frame straight to the client's ASGI ``send`` (one
encoded frame for every client), with no queue, no task wake-up and no trip through
Django's response iteration. The stream's own task still writes everything else (the
opening, a backlog, keep-alives, the last event), so it alone ends the response.

The hub writes only while the task waits with an empty queue; the task stops it the
moment it wakes. A write the server cannot finish at once (the client is not reading)
becomes the task's to finish: it is woken, and it awaits that write, timed like its own
(the hub cuts a client off whose write is stuck), before it writes anything else.

The hub's writes must go to the very connection Django's ASGI handler writes the
response to, unchanged in between: :func:`tasktrail.asgi.direct_stream_writes` wraps
Django's application and leaves a :class:`ServerSend` in the scope for the stream
views. It watches what Django sends through it, and a stream writes directly only
once its own first bytes (:data:`FIRST_BYTES`) were seen to pass through it as they
were: a middleware in between that compresses the body keeps every write in Django's
hands. It also counts the bytes that reach it, and the hub writes only while the stream's
task has nothing still on its way (a middleware that holds writes back for a while).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .events import Frame

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# Where tasktrail.asgi.direct_stream_writes leaves the ServerSend in the scope.
SEND_KEY = "tasktrail.send"
# Every stream's first write: the reconnection delay of the EventSource spec.
FIRST_BYTES = b"retry: 2000\n\n"


class ServerSend:
    """The server's ``send`` for one request, as Django's handler was given it; it
    notes when a stream's first bytes pass through it unchanged, and counts the body
    bytes that reached it (a wrapper that holds some back is noticed too)."""

    __slots__ = ("passed", "send", "verified")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.verified = False
        self.passed = 0

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        body = message.get("body")
        if body:
            if not self.verified and not self.passed and body == FIRST_BYTES:
                self.verified = True
            self.passed += len(body)
        await self.send(message)


class Wake:
    """Put on a stream's queue when a direct write is left for its task to finish."""


WAKE = Wake()


class DirectWriter:
    def __init__(
        self,
        server: ServerSend,
        visible: Callable[[Frame], bool],
        stops: Callable[[Frame], bool],
    ) -> None:
        self.server = server
        self.visible = visible
        self.stops = stops
        # True only while the stream's task waits for its queue (set and cleared by it).
        self.idle = False
        # The newest event the client has been given (or skipped as not visible).
        self.order: tuple[int, int] = (0, 0)
        self.last: str | None = None
        # The bytes the stream's task has handed to Django, and when the client was last
        # written to (by either): the keep-alive counts from there.
        self.handed = 0
        self.wrote_at = 0.0
        self.pending: asyncio.Future[None] | None = None
        self.failed: BaseException | None = None

    def take(self, frame: Frame) -> Frame | Wake | None:
        """Write ``frame`` now, or skip it if the client has it or may not see it (None).
        What the stream's task must handle is returned, for its queue: a frame that ends
        the stream, or :data:`WAKE` for a write it must finish (or that failed)."""
        if frame.order <= self.order:
            return None
        if self.stops(frame):
            return frame
        self.order, self.last = frame.order, frame.id
        if not self.visible(frame):
            return None
        message = {"type": "http.response.body", "body": frame.sse, "more_body": True}
        # Eager: a server that can write at once does so now, with no task scheduled.
        sending = self.server.send(message)
        write: asyncio.Future[None] = (
            asyncio.eager_task_factory(asyncio.get_running_loop(), sending)
            if asyncio.iscoroutine(sending)
            else asyncio.ensure_future(sending)
        )
        self.wrote_at = write.get_loop().time()
        if not write.done():
            # Retrieved even if the stream ends before its task awaits it.
            write.add_done_callback(_retrieve)
            self.pending = write
            return WAKE
        if not write.cancelled() and (failure := write.exception()) is not None:
            self.failed = failure
            return WAKE
        return None

    def caught_up(self) -> bool:
        """Everything the task handed to Django has reached the server, unchanged in
        size: a direct write now cannot overtake it. (A stream whose first bytes were
        changed on the way has no writer at all.)"""
        return self.server.passed == self.handed

    def stop(self) -> None:
        """The stream ends: no more direct writes, and none left waiting."""
        self.idle = False
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()

    async def settle(self) -> None:
        """Finish a write the hub began (the task's, before it writes anything)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending
        if self.failed is not None:
            raise self.failed


def _retrieve(write: asyncio.Future[None]) -> None:
    if not write.cancelled():
        write.exception()
