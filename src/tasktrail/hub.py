"""One Redis subscriber per web process (per event loop) for all open streams.

A stream registers a :class:`Listener` on its channel; the hub subscribes to a
channel while someone listens to it and hands each message, parsed once, to every
listener. The number of Redis connections does not grow with the number of
clients, and nothing polls. If the subscription breaks, every listener is told to
resynchronise from the Redis stream, so no event is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass, field

import redis

from . import keys
from .connection import get_async_redis
from .events import Frame

logger = logging.getLogger("tasktrail")

QUEUE_SIZE = 1024


class Resync:
    """Put on a listener's queue when messages may have been missed."""


RESYNC = Resync()


@dataclass(eq=False)
class Listener:
    channel: str
    queue: asyncio.Queue[Frame | Resync] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def deliver(self, item: Frame | Resync) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A slow client: drop what it has queued and let it re-read the stream.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class Hub:
    def __init__(self) -> None:
        self.listeners: dict[str, set[Listener]] = {}
        self._pubsub = get_async_redis().pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self._home = f"{keys.prefix()}:ch:hub"  # keeps the connection in subscribed mode
        self._starting = asyncio.Lock()

    async def listen(self, channel: str) -> Listener:
        listener = Listener(channel)
        subscribers = self.listeners.setdefault(channel, set())
        subscribers.add(listener)
        if len(subscribers) == 1:
            await self._subscribe(channel)
        return listener

    async def unlisten(self, listener: Listener) -> None:
        subscribers = self.listeners.get(listener.channel)
        if subscribers is None:
            return
        subscribers.discard(listener)
        if not subscribers:
            del self.listeners[listener.channel]
            # On failure the reader's reconnect resubscribes only what is still listened to.
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.unsubscribe(listener.channel)

    async def _subscribe(self, channel: str) -> None:
        # One reader per connection: without the lock, streams opening together would
        # each start one while the first SUBSCRIBE is in flight.
        async with self._starting:
            if self._reader is None or self._reader.done():
                await self._pubsub.subscribe(self._home)
                self._reader = asyncio.get_running_loop().create_task(
                    self._read(), name="tasktrail-hub"
                )
        try:
            await self._pubsub.subscribe(channel)
        except (redis.RedisError, OSError) as exc:
            logger.warning("tasktrail: could not subscribe to %s: %s", channel, exc)

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            try:
                message = await self._pubsub.get_message(timeout=5.0)
                backoff = 0.1
            except (redis.RedisError, OSError, RuntimeError) as exc:
                # RuntimeError: redis-py has no connection after a failed reconnect.
                logger.warning("tasktrail: event subscriber lost Redis (%s); reconnecting", exc)
                self._broadcast_resync()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._reconnect()
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            subscribers = self.listeners.get(channel)
            if not subscribers:
                continue
            try:
                frame = Frame.from_message(message["data"])
            except (ValueError, TypeError):
                logger.warning("tasktrail: ignoring a malformed event on %s", channel)
                continue
            for listener in tuple(subscribers):
                listener.deliver(frame)

    async def _reconnect(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = get_async_redis().pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(self._home, *self.listeners)
            self._broadcast_resync()  # events published while we were away are in the streams
        except (redis.RedisError, OSError) as exc:
            logger.warning("tasktrail: Redis still unreachable: %s", exc)

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
