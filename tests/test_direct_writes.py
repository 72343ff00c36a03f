"""Direct stream writes (tasktrail.direct): Django's real ASGI application, wrapped by
``direct_stream_writes``, serves a run's stream in this process against the test Redis;
the events come from real transitions. Each write the server receives is marked with the
way it came: through Django's send, or straight from the hub.

The class these tests cover: a live event written by the hub must never overtake,
duplicate or lose an event written by the stream's own task, must not be written after
the response ended, and must not be written at all when something between Django and
the server rewrites the body."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from tasktrail import direct, hub, keys
from tasktrail.access import make_token
from tasktrail.asgi import direct_stream_writes
from tasktrail.connection import get_async_redis
from tasktrail.transitions import apply, stamp
from tests.asgi import application as wrapped_application

pytestmark = pytest.mark.django_db(transaction=True)

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Wire:
    """The server's side of one request: what was written, and by which way."""

    writes: list[tuple[str, bytes]] = field(default_factory=list)
    ended: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    # While set, a body write waits for it (a client that stopped reading).
    held: asyncio.Event | None = None

    async def send(self, message: Message) -> None:
        if self.held is not None and message["type"] == "http.response.body":
            await self.held.wait()
        assert not self.ended, f"written after the response ended: {message!r}"
        if message["type"] == "http.response.body":
            self.writes.append((_WAY.get(id(message), "direct"), message.get("body", b"")))
            self.ended = not message.get("more_body", False)
        self.arrived.set()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def text(self) -> str:
        return b"".join(body for _, body in self.writes).decode()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()


# Which message came through Django's send (ServerSend.__call__), by its id.
_WAY: dict[int, str] = {}


@pytest.fixture(autouse=True)
def _mark_djangos_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    through_django = direct.ServerSend.__call__

    async def marked(self: direct.ServerSend, message: Message) -> None:
        _WAY[id(message)] = "django"
        try:
            await through_django(self, message)
        finally:
            _WAY.pop(id(message), None)

    monkeypatch.setattr(direct.ServerSend, "__call__", marked)


def _running_run() -> str:
    run_id = str(uuid.uuid4())
    apply(run_id, "publish", status="READY", create={"id": run_id, "task": "t.direct"})
    apply(run_id, "start", attempt=1, status="RUNNING", fields={"worker": "w"},
          create={"started_at": stamp(0.0)})  # fmt: skip
    return run_id


def _progress(run_id: str, current: int) -> None:
    data = {"run": run_id, "current": current}
    apply(run_id, "progress", attempt=1, fields={"p_current": repr(float(current))},
          events=[("progress", data)])  # fmt: skip


def _finish(run_id: str) -> None:
    apply(run_id, "finish", attempt=1, status="SUCCESSFUL", fields={"finished_at": stamp(1.0)},
          events=[("state", {"run": run_id, "at": 1.0})])  # fmt: skip


def _scope(run_id: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": f"/tasks/{run_id}/events/", "raw_path": b"",
        "query_string": f"token={make_token(run_id)}".encode(), "root_path": "",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }  # fmt: skip


@contextlib.asynccontextmanager
async def _serving(app: Any, run_id: str, wire: Wire) -> AsyncIterator[asyncio.Task[None]]:
    first = True

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        return await wire.receive()

    request = asyncio.get_running_loop().create_task(app(_scope(run_id), receive, wire.send))
    try:
        yield request
    finally:
        wire.gone.set()
        async with asyncio.timeout(10):
            await request
        one = hub.get_hub()
        for task in (one._reader, one._sweeper):
            if task is not None:
                task.cancel()
        await one._pubsub.aclose()


def _progress_numbers(text: str) -> list[int]:
    import json

    return [
        json.loads(line.removeprefix("data: "))["current"]
        for block in text.split("\n\n")
        if "event: progress" in block
        for line in block.splitlines()
        if line.startswith("data: ")
    ]


def _ids(text: str) -> list[tuple[int, int]]:
    found = [line[4:] for line in text.splitlines() if line.startswith("id: ")]
    return [(int(a), int(b)) for a, b in (i.split("-") for i in found)]


async def _waiting(wire: Wire, settle: float = 0.2) -> None:
    """Until the snapshot is out and the stream waits for events."""
    await wire.until(lambda: "event: state" in wire.text())
    await asyncio.sleep(settle)


def _ways(wire: Wire, marker: bytes) -> set[str]:
    return {way for way, body in wire.writes if marker in body}


def test_live_events_go_straight_to_the_client_in_order_and_the_end_through_django() -> None:
    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()
        async with _serving(wrapped_application, run_id, wire):
            await _waiting(wire)
            for n in range(1, 51):
                await asyncio.to_thread(_progress, run_id, n)
            await wire.until(lambda: _progress_numbers(wire.text())[-1:] == [50])
            await asyncio.to_thread(_finish, run_id)
            await wire.until(lambda: wire.ended)
        text = wire.text()
        assert _progress_numbers(text) == list(range(1, 51))
        assert _ids(text) == sorted(set(_ids(text)))  # in order, none twice
        progress_ways = _ways(wire, b"event: progress")
        assert progress_ways == {"direct"}, "the hub did not write the live events itself"
        assert _ways(wire, b"SUCCESSFUL") == {"django"}  # the end: the task's, then the close
        assert wire.writes[-1] == ("django", b"")

    asyncio.run(scenario())


def _gzip_between(app: Any) -> Any:
    """A body-compressing middleware between the wrapper and Django (a deflate stream)."""

    async def compressing(scope: Any, receive: Any, send: Send) -> None:
        squeeze = zlib.compressobj()

        async def squeezed(message: Message) -> None:
            if message["type"] == "http.response.body":
                body = squeeze.compress(message.get("body", b"")) + squeeze.flush(zlib.Z_SYNC_FLUSH)
                message = {**message, "body": body}
            await send(message)

        await app(scope, receive, squeezed)

    return compressing


def test_a_middleware_that_rewrites_bodies_keeps_every_write_in_djangos_hands() -> None:
    from django.core.asgi import get_asgi_application

    app = direct_stream_writes(_gzip_between(get_asgi_application()))

    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()

        def text() -> str:
            return zlib.decompressobj().decompress(b"".join(b for _, b in wire.writes)).decode()

        async with _serving(app, run_id, wire):
            await wire.until(lambda: len(wire.writes) >= 2)
            await asyncio.sleep(0.2)
            for n in range(1, 21):
                await asyncio.to_thread(_progress, run_id, n)
            await asyncio.to_thread(_finish, run_id)
            await wire.until(lambda: wire.ended)
        assert _progress_numbers(text()) == list(range(1, 21))
        assert "SUCCESSFUL" in text()
        # Every write passed the middleware (compressed): none came straight from the hub.
        assert {way for way, _ in wire.writes} == {"django"}

    asyncio.run(scenario())


def test_a_write_the_client_does_not_take_holds_the_rest_behind_it_in_order() -> None:
    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()
        async with _serving(wrapped_application, run_id, wire):
            await _waiting(wire)
            wire.held = asyncio.Event()  # the client stops reading
            await asyncio.to_thread(_progress, run_id, 1)
            await asyncio.sleep(0.2)
            listener = next(iter(next(iter(hub.get_hub().listeners.values()))))
            # The write is the stream task's now, timed (the hub cuts a stuck one off).
            assert listener.writing_since is not None
            for n in range(2, 31):
                await asyncio.to_thread(_progress, run_id, n)
            await asyncio.sleep(0.2)
            assert _progress_numbers(wire.text()) == []
            wire.held.set()  # it reads again
            wire.held = None
            await wire.until(lambda: _progress_numbers(wire.text())[-1:] == [30])
            assert listener.writing_since is None
            await asyncio.sleep(0.2)
            for n in range(31, 41):  # and the hub writes again
                await asyncio.to_thread(_progress, run_id, n)
            await wire.until(lambda: _progress_numbers(wire.text())[-1:] == [40])
            await asyncio.to_thread(_finish, run_id)
            await wire.until(lambda: wire.ended)
        text = wire.text()
        assert _progress_numbers(text) == list(range(1, 41))
        assert _ids(text) == sorted(set(_ids(text)))
        assert _ways(wire, b'"current":40') == {"direct"}

    asyncio.run(scenario())


def test_a_client_that_leaves_gets_no_write_after_its_stream_ended() -> None:
    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()
        async with _serving(wrapped_application, run_id, wire) as request:
            await _waiting(wire)
            await asyncio.to_thread(_progress, run_id, 1)
            await wire.until(lambda: _progress_numbers(wire.text()) == [1])
            wire.gone.set()  # the client goes away
            async with asyncio.timeout(10):
                await request
            written = len(wire.writes)
            for n in range(2, 11):  # the listener is gone: nothing may be written
                await asyncio.to_thread(_progress, run_id, n)
            await asyncio.sleep(0.3)
            assert len(wire.writes) == written
            assert not hub.get_hub().listeners  # released

    asyncio.run(scenario())


def test_an_unreadable_state_event_stops_neither_the_stream_nor_the_process_reader() -> None:
    # A state event whose body is not a JSON object: deciding whether it ends the stream
    # raised inside the hub's reader, which died, and no stream got a live event again.
    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()
        async with _serving(wrapped_application, run_id, wire):
            await _waiting(wire)
            channel = keys.channel(keys.run_stream(run_id))
            # Newer than what the client has, older than what comes next.
            unreadable = f"{int(time.time() * 1000) - 50}-0\x1fstate\x1f[]"
            await get_async_redis().publish(channel, unreadable)
            for n in range(1, 4):
                await asyncio.to_thread(_progress, run_id, n)
            await wire.until(lambda: _progress_numbers(wire.text())[-1:] == [3])
            reader = hub.get_hub()._reader
            assert reader is not None and not reader.done()
            await asyncio.to_thread(_finish, run_id)
            await wire.until(lambda: wire.ended)
        assert _progress_numbers(wire.text()) == [1, 2, 3]

    asyncio.run(scenario())


def test_the_keep_alive_counts_from_the_last_write_the_hub_made() -> None:
    # The task's wait began before the hub wrote; skipping the keep-alive at its timeout
    # left the client silent for almost twice the interval.
    interval = 1.0

    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()
        times: list[tuple[float, bytes]] = []
        record = wire.send

        async def timed(message: Message) -> None:
            await record(message)
            if message["type"] == "http.response.body":
                times.append((time.monotonic(), message.get("body", b"")))

        wire.send = timed  # type: ignore[method-assign]
        async with _serving(wrapped_application, run_id, wire):
            await _waiting(wire, 0.5)
            await asyncio.to_thread(_progress, run_id, 1)
            await wire.until(lambda: b": keep-alive" in b"".join(b for _, b in times), 5)
            await asyncio.to_thread(_finish, run_id)
            await wire.until(lambda: wire.ended)
        [written] = [at for at, body in times if b"event: progress" in body]
        kept = next(at for at, body in times if body.startswith(b": keep-alive") and at > written)
        assert interval * 0.8 <= kept - written <= interval * 1.4, kept - written

    with override_settings(TASKTRAIL={**settings.TASKTRAIL, "KEEPALIVE_INTERVAL": interval}):
        asyncio.run(scenario())


def _holding_back(app: Any, delay: float) -> Any:
    """A wrapper that forwards the response through a queue and a task of its own, and
    holds every body write after the first for ``delay`` (a buffering middleware)."""

    async def forwarding(scope: Any, receive: Any, send: Send) -> None:
        queue: asyncio.Queue[Message | None] = asyncio.Queue()

        async def forward() -> None:
            bodies = 0
            while (message := await queue.get()) is not None:
                if message["type"] == "http.response.body":
                    bodies += 1
                    if bodies > 1:
                        await asyncio.sleep(delay)
                await send(message)

        forwarder = asyncio.get_running_loop().create_task(forward())

        async def queued(message: Message) -> None:
            await queue.put(message)
            await asyncio.sleep(0)

        try:
            await app(scope, receive, queued)
        finally:
            await queue.put(None)
            await forwarder

    return forwarding


def test_a_wrapper_that_holds_writes_back_is_never_overtaken() -> None:
    from django.core.asgi import get_asgi_application

    app = direct_stream_writes(_holding_back(get_asgi_application(), delay=0.3))

    async def scenario() -> None:
        run_id, wire = _running_run(), Wire()
        async with _serving(app, run_id, wire):
            await wire.until(lambda: len(wire.writes) >= 1)  # retry: passed at once
            for n in range(1, 11):  # while the snapshot is still held back
                await asyncio.to_thread(_progress, run_id, n)
                await asyncio.sleep(0.05)
            await wire.until(lambda: _progress_numbers(wire.text())[-1:] == [10], 15)
            await asyncio.to_thread(_finish, run_id)
            await wire.until(lambda: wire.ended, 15)
        text = wire.text()
        assert text.index("event: state") < text.index("event: progress"), text[:400]
        # What the snapshot already counted is not sent again: the rest, in order, once.
        numbers = _progress_numbers(text)
        assert numbers == list(range(numbers[0], 11)) and numbers[0] <= 3, numbers
        assert _ids(text) == sorted(set(_ids(text)))

    asyncio.run(scenario())
