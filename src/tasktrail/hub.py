"""One Redis subscriber per web process (per event loop) for all open streams.

A stream registers a :class:`Listener` on its channel; the hub subscribes to a
channel while someone listens to it and hands each message, parsed once, to every
listener. The number of Redis connections does not grow with the number of
clients, and nothing polls. If the subscription breaks, every listener is told to
resynchronise from the Redis stream, so no event is lost. Under Sentinel the reader
also notices a failover that leaves its connection open (the demoted master keeps it
until the sentinels reconfigure it) and moves to the new master the same way.

:meth:`Hub.listen` returns only once Redis has *confirmed* the channel's
subscription: a stream reads its backlog after that, so an event is either in what
it reads or on its queue (never in neither).

Streams protect each other: handing a message to a listener never waits, each
listener's queue is bounded, and a client whose write is stuck is cut off (its
stream's task is cancelled) once its queue overflows or after
:data:`WRITE_TIMEOUT`, so it holds nothing the others need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import redis

from . import keys, sentinel
from .connection import get_async_pubsub, get_async_redis
from .direct import DirectWriter, Wake
from .events import Frame

logger = logging.getLogger("tasktrail")

QUEUE_SIZE = 256
# A client whose socket accepted nothing for this long is gone for practical purposes.
WRITE_TIMEOUT = 30.0
SWEEP_EVERY = 1.0
# A channel nobody listens to stays subscribed this long: a burst of reconnecting
# clients does not resubscribe each time.
IDLE_CHANNEL = 30.0
SUBSCRIBE_TIMEOUT = 10.0
# How often the reader checks that its server is still the master (Sentinel only).
MASTER_CHECK = 1.0


class Resync:
    """Put on a listener's queue when messages may have been missed."""


RESYNC = Resync()


@dataclass(eq=False)
class Listener:
    channel: str
    queue: asyncio.Queue[Frame | Resync | Wake] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    # Set when the hub may write live frames to the client itself (tasktrail.direct).
    writer: DirectWriter | None = None
    # The task writing this stream to its client, and since when a write is pending.
    task: asyncio.Task[object] | None = None
    writing_since: float | None = None
    cut: bool = False

    def deliver(self, item: Frame | Resync) -> None:
        if self.cut:
            return
        writer = self.writer
        if writer is not None and writer.idle:
            # Its task waits on an empty queue: write here, or hand it what it must do.
            writer.idle = False
            try:
                queued = writer.take(item) if isinstance(item, Frame) else item
            except Exception:  # a frame its filters choke on: the stream's task meets it
                queued = item
            if queued is None:
                writer.idle = True
                return
            self.queue.put_nowait(queued)
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            if self.writing_since is not None:
                self.cut_off("its buffer is full while a write waits")
                return
            # A slow but moving client: drop what it has queued and let it re-read.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)

    def cut_off(self, why: str) -> None:
        """End the stream: cancel the task blocked writing to the client."""
        if self.cut or self.task is None:
            return
        self.cut = True
        logger.info("tasktrail: cut off a stream client on %s: %s", self.channel, why)
        self.task.cancel()


class Hub:
    def __init__(self) -> None:
        self.listeners: dict[str, set[Listener]] = {}
        # A cluster's is made by the first subscription (finding a node is awaited).
        self._pubsub: Any = None if keys.clustered() else get_async_redis().pubsub()
        self._reader: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._home = f"{keys.prefix()}:ch:hub"  # keeps the connection in subscribed mode
        self._starting = asyncio.Lock()
        # Per channel: resolved when Redis confirms the subscription.
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._idle_since: dict[str, float] = {}

    async def listen(self, listener: Listener) -> Listener:
        """Register a listener; return once the channel's subscription is confirmed."""
        channel = listener.channel
        self.listeners.setdefault(channel, set()).add(listener)
        self._idle_since.pop(channel, None)
        confirmed = self._subscribed.get(channel)
        if confirmed is None:
            confirmed = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            try:
                await self._subscribe(channel)
            except BaseException:
                # Nothing may wait on a subscription that was never sent: the next opener
                # of this channel subscribes again.
                self._subscribed.pop(channel, None)
                await self.unlisten(listener)
                raise
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await asyncio.shield(confirmed)
        except TimeoutError:
            # Redis is slow or away: the reader's reconnect resynchronises every
            # listener once it is back, so the stream still misses nothing.
            logger.warning("tasktrail: subscription to %s not confirmed yet", channel)
        return listener

    async def unlisten(self, listener: Listener) -> None:
        subscribers = self.listeners.get(listener.channel)
        if subscribers is None:
            return
        subscribers.discard(listener)
        if not subscribers:
            del self.listeners[listener.channel]
            self._idle_since[listener.channel] = asyncio.get_running_loop().time()

    async def _subscribe(self, channel: str) -> None:
        # One reader per connection: without the lock, streams opening together would
        # each start one while the first SUBSCRIBE is in flight.
        try:
            async with self._starting:
                if self._reader is None or self._reader.done():
                    if self._pubsub is None:
                        self._pubsub = await get_async_pubsub()
                    await self._pubsub.subscribe(self._home)
                    loop = asyncio.get_running_loop()
                    self._reader = loop.create_task(self._read(), name="tasktrail-hub")
                    self._sweeper = loop.create_task(self._sweep(), name="tasktrail-hub-sweep")
            await self._pubsub.subscribe(channel)
        except (redis.RedisError, OSError) as exc:
            logger.warning("tasktrail: could not subscribe to %s: %s", channel, exc)
            # Do not keep openers waiting: the reader's reconnect subscribes again and
            # tells every listener to resynchronise from the stream.
            self._confirmed(channel)
            self._subscribed.pop(channel, None)

    def _confirmed(self, channel: str) -> None:
        confirmed = self._subscribed.get(channel)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    async def _read(self) -> None:
        backoff = 0.1
        loop = asyncio.get_running_loop()
        next_check = loop.time() + MASTER_CHECK
        while True:
            try:
                message = await self._pubsub.get_message(timeout=MASTER_CHECK)
                backoff = 0.1
                if loop.time() >= next_check:
                    next_check = loop.time() + MASTER_CHECK
                    if await sentinel.amaster_moved(self._pubsub):
                        # Sentinel failed over: the new master publishes, not this one.
                        raise redis.ConnectionError("the master moved (Sentinel failover)")
            except (redis.RedisError, OSError, RuntimeError) as exc:
                # RuntimeError: redis-py has no connection after a failed reconnect.
                logger.warning("tasktrail: event subscriber lost Redis (%s); reconnecting", exc)
                self._broadcast_resync()
                self._stop_waiting()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._reconnect()
                continue
            if message is None:
                continue
            channel = message["channel"].decode()
            if message.get("type") == "subscribe":
                self._confirmed(channel)
                continue
            if message.get("type") != "message":
                continue
            subscribers = self.listeners.get(channel)
            if not subscribers:
                continue
            try:
                frame = Frame.from_message(message["data"])
            except (ValueError, TypeError):
                logger.warning("tasktrail: ignoring a malformed event on %s", channel)
                continue
            for listener in tuple(subscribers):
                try:
                    listener.deliver(frame)
                except Exception:  # one stream's trouble never stops the others' events
                    logger.exception("tasktrail: could not hand an event to a stream")

    async def _sweep(self) -> None:
        """Cut off clients whose writes are stuck; drop channels nobody listens to."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await self._sweep_once(asyncio.get_running_loop().time())
            except Exception:  # a sweeper that dies never cuts a stuck client off again
                logger.exception("tasktrail: the hub's sweep failed; it goes on")

    async def _sweep_once(self, now: float) -> None:
        for subscribers in tuple(self.listeners.values()):
            for listener in tuple(subscribers):
                since = listener.writing_since
                if since is not None and now - since > WRITE_TIMEOUT:
                    listener.cut_off(f"no write completed for {WRITE_TIMEOUT:.0f} s")
        for channel, since in tuple(self._idle_since.items()):
            # Each unsubscribe awaits: a channel may be listened to again meanwhile.
            if self._idle_since.get(channel) != since or channel in self.listeners:
                continue
            confirmed = self._subscribed.get(channel)
            if now - since < IDLE_CHANNEL or confirmed is None or not confirmed.done():
                continue
            self._idle_since.pop(channel, None)
            self._subscribed.pop(channel, None)
            # On failure the reader's reconnect resubscribes only what is listened to.
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def _reconnect(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()
        self._idle_since.clear()
        for channel in tuple(self._subscribed):
            if channel not in self.listeners:
                del self._subscribed[channel]
        try:
            # A cluster's: through a node that answers now (the old one may be gone).
            self._pubsub = await get_async_pubsub()
            await self._pubsub.subscribe(self._home, *self.listeners)
            self._broadcast_resync()  # events published while we were away are in the streams
        except (redis.RedisError, OSError) as exc:
            logger.warning("tasktrail: Redis still unreachable: %s", exc)

    def _stop_waiting(self) -> None:
        """No opener waits for a confirmation through an outage: once the reader is
        back, every listener resynchronises from the stream anyway."""
        for channel, confirmed in tuple(self._subscribed.items()):
            if not confirmed.done():
                confirmed.set_result(None)
                del self._subscribed[channel]

    def _broadcast_resync(self) -> None:
        for subscribers in self.listeners.values():
            for listener in subscribers:
                listener.deliver(RESYNC)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
