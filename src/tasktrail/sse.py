"""Server-Sent Events: a resumable stream of one Redis event stream.

The generator registers with the process hub, which returns once Redis has
confirmed the subscription, *before* reading the backlog: an event published in
between is both in the backlog and on the queue; ids are monotonic, and anything
not newer than the last id sent is skipped. The stream stops when the client goes
away, after the terminal state, or when the client cannot keep up (the hub cuts it
off; it resumes with ``Last-Event-ID``).

Events go out in batches (one write per backlog page or per wake-up, not one per
event), and the response yields to the event loop after each write, so a client
that went away is noticed before the next write instead of after hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import django
import redis
from django.core.exceptions import RequestAborted
from django.http import HttpRequest, StreamingHttpResponse

from .connection import get_async_redis
from .direct import FIRST_BYTES, SEND_KEY, DirectWriter, ServerSend, Wake
from .events import Frame
from .hub import Listener, Resync, get_hub

BACKLOG_CHUNK = 500
WRITE_BYTES = 64 * 1024  # one write per this much (Django's ASGI chunk size)
# Django 6 runs the response in a TaskGroup: a cut must surface as RequestAborted there;
# Django 5.2 swallows the CancelledError of a send itself.
_ABORT_AS_REQUEST_ABORTED = django.VERSION >= (6, 0)

Opening = Callable[[], Awaitable[tuple[list[bytes], str | None, bool]]]
T = TypeVar("T")


class EventStream:
    """The body of a stream: an async iterator that knows its hub listener."""

    def __init__(self, listener: Listener, body: AsyncIterator[bytes]) -> None:
        self.listener = listener
        self._body = body

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._body.__anext__()

    async def aclose(self) -> None:
        await self._body.aclose()  # type: ignore[attr-defined]


class EventStreamResponse(StreamingHttpResponse):
    """Times each write to the client (the hub cuts off a client whose write is stuck)
    and closes the stream, releasing its listener, the moment the response ends."""

    listener: Listener | None = None
    body: EventStream | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        listener, task = self.listener, asyncio.current_task()
        clock = asyncio.get_running_loop().time
        if listener is not None:
            listener.task = task
        try:
            async for part in self.streaming_content:  # type: ignore[union-attr]
                if listener is not None:
                    listener.writing_since = clock()
                yield part
                if listener is not None:
                    listener.writing_since = None
                await asyncio.sleep(0)  # a lost connection is noticed before the next write
        finally:
            if self.body is not None:
                await self.body.aclose()
            if listener is not None and listener.cut and _ABORT_AS_REQUEST_ABORTED and task:
                task.uncancel()
                raise RequestAborted("the client could not keep up")


def sse_response(body: AsyncIterator[bytes]) -> StreamingHttpResponse:
    """A ``text/event-stream`` response that proxies pass through unbuffered."""
    response = EventStreamResponse(body, content_type="text/event-stream")
    if isinstance(body, EventStream):
        response.listener, response.body = body.listener, body
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


def server_send(request: HttpRequest) -> ServerSend | None:
    """The send left by :func:`tasktrail.asgi.direct_stream_writes`, if it wraps Django."""
    server = getattr(request, "scope", {}).get(SEND_KEY)
    return server if isinstance(server, ServerSend) else None


class SharedReads:
    """Concurrent openers of one stream share one Redis read of it.

    An opener joins only a read that has not started yet, so every read starts after
    each of its openers registered with the hub: sharing never opens a gap."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Any]] = {}

    async def read(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        pending = self._waiting.get(key)
        if pending is None:
            pending = self._waiting[key] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._run(key, pending, fetch))
        return await asyncio.shield(pending)

    async def _run(self, key: str, pending: asyncio.Future[Any], fetch: Callable[[], Any]) -> None:
        await asyncio.sleep(0)  # openers arriving in this tick join
        del self._waiting[key]
        try:
            pending.set_result(await fetch())
        except Exception as exc:  # handed to every opener
            pending.set_exception(exc)
        if not pending.cancelled():
            pending.exception()  # retrieved: no "never retrieved" warning when all left


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedReads] = (
    weakref.WeakKeyDictionary()
)


def shared_reads() -> SharedReads:
    loop = asyncio.get_running_loop()
    reads = _shared.get(loop)
    if reads is None:
        reads = _shared[loop] = SharedReads()
    return reads


async def read_after(stream: str, last: str | None, count: int = BACKLOG_CHUNK) -> list[Frame]:
    """Events of ``stream`` after ``last`` (exclusive), oldest first."""
    start = f"({last}" if last else "-"
    entries: Any = await get_async_redis().xrange(stream, min=start, max="+", count=count)
    return [Frame.from_entry(entry_id, values) for entry_id, values in entries]


async def read_tail(stream: str, count: int) -> list[Frame]:
    entries: Any = await get_async_redis().xrevrange(stream, max="+", min="-", count=count)
    return [Frame.from_entry(entry_id, values) for entry_id, values in reversed(entries)]


def event_stream(
    *,
    stream: str,
    channel: str,
    last_id: str | None,
    opening: Opening | None,
    visible: Callable[[Frame], bool] = lambda frame: True,
    stops: Callable[[Frame], bool] = lambda frame: frame.is_terminal,
    keepalive: float = 15.0,
    over: bool = False,
    server: ServerSend | None = None,
) -> EventStream:
    """SSE bytes: the opening (snapshot) or the missed backlog, then live events.

    ``opening`` returns the frames to send first, the id they bring the client to,
    and whether the stream is already over (a finished run). ``over=True`` says so up
    front: a resumed client gets the backlog, or (if Redis no longer has it) the final
    snapshot, and the stream ends instead of waiting for events that will never come.

    ``server``, the send that Django writes this response with, lets the hub write
    live events to the client itself (:mod:`tasktrail.direct`).
    """
    listener = Listener(channel)
    if server is not None:
        listener.writer = DirectWriter(server, visible, stops)
    body = _stream(stream, listener, last_id, opening, visible, stops, keepalive, over)
    return EventStream(listener, body)


async def merged(bodies: list[EventStream]) -> AsyncIterator[bytes]:
    """Several streams as one (a firehose per shard on a Redis Cluster): their writes
    interleaved as they come, each a whole number of events. When one ends (Redis went
    away) all end, and the client resumes every one from its last id: ids are the
    masters' clocks, so after a resume an event may repeat or be missed within their
    skew (a dashboard feed; the record is the truth)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

    async def pump(body: EventStream) -> None:
        with contextlib.suppress(Exception):  # a stream that failed ends them all
            async for chunk in body:
                await queue.put(chunk)
        await queue.put(None)  # not when cancelled: the reader has gone

    tasks = [asyncio.get_running_loop().create_task(pump(body)) for body in bodies]
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        for task in tasks:
            task.cancel()
        for body in bodies:
            with contextlib.suppress(Exception):
                await body.aclose()


async def _stream(
    stream: str,
    listener: Listener,
    last_id: str | None,
    opening: Opening | None,
    visible: Callable[[Frame], bool],
    stops: Callable[[Frame], bool],
    keepalive: float,
    over: bool,
) -> AsyncIterator[bytes]:
    hub = get_hub()
    await hub.listen(listener)
    writer = listener.writer
    clock = asyncio.get_running_loop().time
    try:
        if writer is not None:
            writer.handed += len(FIRST_BYTES)
        yield FIRST_BYTES
        if writer is not None and not writer.server.verified:
            listener.writer = writer = None  # something between Django and the server changed it
        async for chunk in _events(
            stream, listener, last_id, opening, visible, stops, keepalive, over
        ):
            if writer is not None:
                writer.handed += len(chunk)
                writer.wrote_at = clock()
            yield chunk
    except redis.RedisError:
        # Redis went away: end the stream; the browser reconnects with its last id and
        # resumes once Redis answers (the status endpoint reads the database meanwhile).
        return
    finally:
        if writer is not None:
            writer.stop()
        await hub.unlisten(listener)


def _batches(frames: Iterable[Frame], visible: Callable[[Frame], bool]) -> Iterable[bytes]:
    """The visible frames' bytes, joined into writes of about :data:`WRITE_BYTES`."""
    batch: list[bytes] = []
    size = 0
    for frame in frames:
        if visible(frame):
            batch.append(frame.sse)
            size += len(frame.sse)
            if size >= WRITE_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
    if batch:
        yield b"".join(batch)


def _upto_stop(frames: list[Frame], stops: Callable[[Frame], bool]) -> tuple[list[Frame], bool]:
    for index, frame in enumerate(frames):
        if stops(frame):
            return frames[: index + 1], True
    return frames, False


async def _events(
    stream: str,
    listener: Listener,
    last_id: str | None,
    opening: Opening | None,
    visible: Callable[[Frame], bool],
    stops: Callable[[Frame], bool],
    keepalive: float,
    over: bool,
) -> AsyncIterator[bytes]:
    last = last_id
    backlog = last is not None
    if last is None and opening is not None:
        chunks, last, finished = await opening()
        for chunk in chunks:
            yield chunk
        if finished:
            return
        # The opening was read after the subscription was confirmed: what is newer than
        # it arrives on the queue. Only an opening that covers none of the log ("0-0")
        # is followed by the log itself.
        backlog = last == "0-0"
    if last is not None and backlog:
        async for frames, stopped in _backlog(stream, last, stops):
            last = frames[-1].id
            for chunk in _batches(frames, visible):
                yield chunk
            if stopped:
                return
    if over:
        if opening is not None and last_id is not None:
            chunks, _, _ = await opening()
            for chunk in chunks:
                yield chunk
        return
    order = (0, 0) if last is None else Frame(last, "", "").order
    writer = listener.writer
    clock = asyncio.get_running_loop().time
    while True:
        wait = keepalive
        if writer is not None:
            # From here until it wakes, the hub writes what comes to the client itself
            # (once what this task wrote is out: a wrapper may hold some back a while).
            writer.order, writer.last = order, last
            writer.idle = listener.queue.empty() and writer.caught_up()
            wait = max(0.0, keepalive - (clock() - writer.wrote_at))
        timed_out = False
        try:
            async with asyncio.timeout(wait):  # no task per event, unlike wait_for
                first = await listener.queue.get()
        except TimeoutError:
            timed_out = True
        finally:
            if writer is not None:
                writer.idle = False  # before this task writes anything
                order, last = writer.order, writer.last
        if writer is not None and (writer.pending is not None or writer.failed is not None):
            listener.writing_since = clock()  # timed like this task's own writes
            await writer.settle()
            listener.writing_since = None
        if timed_out:
            if writer is not None and clock() - writer.wrote_at < keepalive:
                continue  # the hub wrote meanwhile: the silence is shorter than that
            yield b": keep-alive\n\n"
            continue
        items = [first]
        while not listener.queue.empty() and len(items) < BACKLOG_CHUNK:
            items.append(listener.queue.get_nowait())
        fresh: list[Frame] = []
        resync = False
        for item in items:
            if isinstance(item, Wake):
                continue  # its write was settled above
            if isinstance(item, Resync):
                resync = True  # what follows it is in the stream too: read from there
                break
            if item.order > order:  # not already sent from the backlog
                fresh.append(item)
                order = item.order
        fresh, stopped = _upto_stop(fresh, stops)
        if fresh:
            last = fresh[-1].id
        for chunk in _batches(fresh, visible):
            yield chunk
        if stopped:
            return
        if resync:
            async for frames, stopped in _backlog(stream, last or "0-0", stops):
                last, order = frames[-1].id, frames[-1].order
                for chunk in _batches(frames, visible):
                    yield chunk
                if stopped:
                    return


async def _backlog(
    stream: str, last: str, stops: Callable[[Frame], bool]
) -> AsyncIterator[tuple[list[Frame], bool]]:
    """Pages of events after ``last`` (never empty), up to and including a stop."""
    while True:
        frames = await read_after(stream, last)
        if not frames:
            return
        frames, stopped = _upto_stop(frames, stops)
        yield frames, stopped
        if stopped or len(frames) < BACKLOG_CHUNK:
            return
        last = frames[-1].id
