"""A process that publishes for long and never waits (a web server): Celery's Redis
backend subscribes it to each task's result channel at every publish, and only a
waiting ``get()`` reads that connection, so Redis's replies piled up unread until the
publisher blocked (the 1,000,000-run soak hung after 140,000 ``delay()`` calls).
tasktrail's backend reads them as it goes. The kernel says how much is left unread;
Celery's ``get()`` says the results still arrive."""

from __future__ import annotations

import fcntl
import struct
import termios
import threading
from typing import Any

import pytest
import redis
from celery.result import AsyncResult
from django.conf import settings

from tasktrail.backend import READ_REPLIES_EVERY
from tests.helpers import eventually
from tests.testapp.tasks import add, sleepy

# Celery's backend and Redis's replies: neither the database nor Django changes them.
pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.once]


def _unread_bytes(backend: Any) -> int:
    """Bytes Redis sent on the process's result connection that nobody has read yet."""
    sock = backend.result_consumer._pubsub.connection._sock
    raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


def test_a_publisher_that_never_waits_reads_what_redis_sends_it() -> None:
    for i in range(1000):
        add.delay(i, i)  # dropped at once, as a view drops them
    # Each publish leaves a subscribe and an unsubscribe confirmation (and a result, if
    # it came while subscribed), about 80 bytes each: 1,000 publishes left 160 kB.
    assert _unread_bytes(add.backend) < 3 * 100 * READ_REPLIES_EVERY


def test_publishing_still_subscribes_as_celery_does() -> None:
    result = sleepy.delay(0.5)
    channel = result.backend.get_key_for_task(result.id)
    client = redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"])
    assert client.pubsub_numsub(channel) == [(channel, 1)]  # Celery's own test asks this
    assert result.get(timeout=10) == 0.5


def test_a_result_stored_before_anyone_waited_is_still_got() -> None:
    results = [add.delay(i, 1) for i in range(3 * READ_REPLIES_EVERY)]
    eventually(lambda: all(AsyncResult(r.id).state == "SUCCESS" for r in results), timeout=30)
    assert [r.get(timeout=10) for r in results] == [i + 1 for i in range(3 * READ_REPLIES_EVERY)]


def test_a_wait_that_starts_before_the_end_is_woken_by_it() -> None:
    result = sleepy.delay(1.0)
    assert result.get(timeout=20) == 1.0


def test_publishing_beside_a_thread_waiting_in_get_loses_nothing() -> None:
    # The backend is shared by threads: the publisher reads while another thread waits.
    waited: list[Any] = []
    waiting = threading.Thread(target=lambda: waited.append(sleepy.delay(1.5).get(timeout=30)))
    waiting.start()
    results = [add.delay(i, i) for i in range(8 * READ_REPLIES_EVERY)]
    waiting.join(timeout=40)
    assert waited == [1.5]
    assert [r.get(timeout=20) for r in results] == [2 * i for i in range(8 * READ_REPLIES_EVERY)]


def _recorded_redis_backend() -> type:
    from celery.backends.redis import RedisBackend

    from tasktrail.backend import RecordingBackendMixin

    return type("RecordedRedis", (RecordingBackendMixin, RedisBackend), {})


RecordedRedis = _recorded_redis_backend()


def test_a_team_that_mixes_the_recorder_into_celerys_redis_backend_is_read_for_too() -> None:
    """The same hang with a team's own backend: the recording mixin on Celery's
    ``RedisBackend`` (its results kept where they were), in a publisher of its own."""
    from celery import Celery

    app = Celery("mixin-publisher", broker=settings.CELERY_BROKER_URL, set_as_current=False)
    app.conf.result_backend = "tests.test_result_subscriptions:RecordedRedis"
    app.conf.redis_host, app.conf.redis_port, app.conf.redis_db = "127.0.0.1", 6379, 12
    queue = f"{settings.TASKTRAIL['KEY_PREFIX']}-unconsumed"
    try:
        for i in range(1000):  # to a queue no worker reads: only the subscriptions matter
            app.send_task("tests.never.run", args=[i], queue=queue)
        assert isinstance(app.backend, RecordedRedis)
        assert _unread_bytes(app.backend) < 3 * 100 * READ_REPLIES_EVERY
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)
        app.close()
