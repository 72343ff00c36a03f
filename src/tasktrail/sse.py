"""Server-Sent Events: a resumable stream of one Redis event stream.

The generator registers with the process hub *before* reading the backlog, so an
event published in between is both in the backlog and on the queue; ids are
monotonic, and anything not newer than the last id sent is skipped. The stream
stops when the client goes away (the ASGI server cancels it) or after the
terminal state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis
from django.http import StreamingHttpResponse

from .connection import get_async_redis
from .events import Frame
from .hub import Listener, Resync, get_hub

BACKLOG_CHUNK = 500


def sse_response(body: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """A ``text/event-stream`` response that proxies pass through unbuffered."""
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


async def read_after(stream: str, last: str | None, count: int = BACKLOG_CHUNK) -> list[Frame]:
    """Events of ``stream`` after ``last`` (exclusive), oldest first."""
    start = f"({last}" if last else "-"
    entries: Any = await get_async_redis().xrange(stream, min=start, max="+", count=count)
    return [Frame.from_entry(entry_id, values) for entry_id, values in entries]


async def read_tail(stream: str, count: int) -> list[Frame]:
    entries: Any = await get_async_redis().xrevrange(stream, max="+", min="-", count=count)
    return [Frame.from_entry(entry_id, values) for entry_id, values in reversed(entries)]


async def event_stream(
    *,
    stream: str,
    channel: str,
    last_id: str | None,
    opening: Callable[[], Awaitable[tuple[list[bytes], str | None, bool]]] | None,
    visible: Callable[[Frame], bool] = lambda frame: True,
    stops: Callable[[Frame], bool] = lambda frame: frame.is_terminal,
    keepalive: float = 15.0,
    over: bool = False,
) -> AsyncIterator[bytes]:
    """Yield SSE bytes: the opening (snapshot) or the missed backlog, then live events.

    ``opening`` returns the frames to send first, the id they bring the client to,
    and whether the stream is already over (a finished run). ``over=True`` says so up
    front: a resumed client gets the backlog, or (if Redis no longer has it) the final
    snapshot, and the stream ends instead of waiting for events that will never come.
    """
    hub = get_hub()
    listener = await hub.listen(channel)
    try:
        yield b"retry: 2000\n\n"
        async for chunk in _events(
            stream, listener, last_id, opening, visible, stops, keepalive, over
        ):
            yield chunk
    except redis.RedisError:
        # Redis went away: end the stream; the browser reconnects with its last id and
        # resumes once Redis answers (the status endpoint reads the database meanwhile).
        return
    finally:
        await hub.unlisten(listener)


async def _events(
    stream: str,
    listener: Listener,
    last_id: str | None,
    opening: Callable[[], Awaitable[tuple[list[bytes], str | None, bool]]] | None,
    visible: Callable[[Frame], bool],
    stops: Callable[[Frame], bool],
    keepalive: float,
    over: bool,
) -> AsyncIterator[bytes]:
    last = last_id
    if last is None and opening is not None:
        chunks, last, finished = await opening()
        for chunk in chunks:
            yield chunk
        if finished:
            return
    if last is not None:
        async for frame in _backlog(stream, last):
            last = frame.id
            if visible(frame):
                yield frame.sse
            if stops(frame):
                return
    if over:
        if opening is not None and last_id is not None:
            chunks, _, _ = await opening()
            for chunk in chunks:
                yield chunk
        return
    order = (0, 0) if last is None else Frame(last, "", "").order
    while True:
        try:
            async with asyncio.timeout(keepalive):  # no task per event, unlike wait_for
                item = await listener.queue.get()
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        if isinstance(item, Resync):
            async for frame in _backlog(stream, last or "0-0"):
                last, order = frame.id, frame.order
                if visible(frame):
                    yield frame.sse
                if stops(frame):
                    return
            continue
        if item.order <= order:
            continue  # already sent from the backlog
        last, order = item.id, item.order
        if visible(item):
            yield item.sse
        if stops(item):
            return


async def _backlog(stream: str, last: str) -> AsyncIterator[Frame]:
    while True:
        frames = await read_after(stream, last)
        for frame in frames:
            yield frame
        if len(frames) < BACKLOG_CHUNK:
            return
        last = frames[-1].id
