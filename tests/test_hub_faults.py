"""The hub recovers from a subscribe that failed, and its sweeper survives a channel that
is listened to again while it unsubscribes. Real Redis clients: a closed port for the
failure, the test Redis after it."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis.asyncio as aioredis

from tasktrail import hub as hubs
from tasktrail.connection import get_async_redis
from tasktrail.keys import prefix

pytestmark = pytest.mark.once  # the hub and Redis alone: no database, no Django view


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failed_first_subscribe_does_not_break_the_channel_for_later_openers() -> None:
    async def scenario() -> None:
        hub = hubs.Hub()
        unreachable = aioredis.Redis(port=_closed_port(), socket_connect_timeout=0.5)
        hub._pubsub = unreachable.pubsub()
        channel = f"{prefix()}:ch:hub-fault-test"
        first = hubs.Listener(channel)
        await hub.listen(first)  # Redis is away: the opener is not kept waiting
        await hub.unlisten(first)
        assert not hub.listeners.get(channel), "a failed listen left its listener behind"
        await unreachable.aclose()
        hub._pubsub = get_async_redis().pubsub()  # Redis is reachable again
        second = hubs.Listener(channel)
        await asyncio.wait_for(hub.listen(second), 5)
        assert hub._subscribed[channel].done()
        await get_async_redis().publish(channel, b"{}")
        await hub.unlisten(second)
        for task in (hub._reader, hub._sweeper):
            if task is not None:
                task.cancel()
        await hub._pubsub.aclose()

    asyncio.run(scenario())


def test_the_sweeper_survives_a_channel_listened_to_again_while_it_unsubscribes(
    monkeypatch: object,
) -> None:
    async def scenario() -> None:
        hub = hubs.Hub()
        a, b = f"{prefix()}:ch:sweep-a", f"{prefix()}:ch:sweep-b"
        listeners = [hubs.Listener(a), hubs.Listener(b)]
        for listener in listeners:
            await hub.listen(listener)
        for listener in listeners:
            await hub.unlisten(listener)
        loop = asyncio.get_running_loop()
        for channel in (a, b):
            hub._idle_since[channel] = loop.time() - 10 * hubs.IDLE_CHANNEL
        real_unsubscribe = hub._pubsub.unsubscribe

        async def unsubscribe_while_b_comes_back(*channels: str) -> object:
            hub._idle_since.pop(b, None)  # what listen() does when b is opened again
            return await real_unsubscribe(*channels)

        hub._pubsub.unsubscribe = unsubscribe_while_b_comes_back  # type: ignore[method-assign]
        monkeypatch.setattr(hubs, "SWEEP_EVERY", 0.05)  # type: ignore[attr-defined]
        sweeper = loop.create_task(hub._sweep())
        await asyncio.sleep(0.5)
        assert not sweeper.done(), sweeper.exception() if sweeper.done() else None
        sweeper.cancel()
        for task in (hub._reader, hub._sweeper):
            if task is not None:
                task.cancel()
        await hub._pubsub.aclose()

    asyncio.run(scenario())
