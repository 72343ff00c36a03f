"""A burst of webhook deliveries costs the web process a bounded number of Redis and
database connections, and no delivery gets a 500 (issue 11, item 13)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from tasktrail.webhooks import sign
from tests.acceptance.urls import SECRET

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def _listener_pid(url: str) -> int:
    port = url.rpartition(":")[2]
    listing = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"pid=(\d+)", listing)
    assert found, listing
    return int(found.group(1))


def _tasktrail_connections(pid: int) -> int:
    client: Any = redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"])
    return sum(1 for c in client.client_list() if c.get("name") == f"tasktrail-{pid}")


def test_two_hundred_concurrent_deliveries_leave_a_bounded_pool_and_no_500(
    acceptance_server: str,
) -> None:
    def deliver(_: int) -> httpx.Response:
        body = json.dumps({"n": uuid.uuid4().hex}).encode()
        headers = {
            "X-Hub-Signature-256": f"sha256={sign(SECRET, body)}",
            "X-GitHub-Delivery": uuid.uuid4().hex,
            "Content-Type": "application/json",
        }
        return httpx.post(
            f"{acceptance_server}/hooks/github/", content=body, headers=headers, timeout=60
        )

    peak = [0]
    done = threading.Event()

    def sample_database_connections() -> None:
        from django.db import connection

        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            while not done.is_set():
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                )
                peak[0] = max(peak[0], cursor.fetchone()[0])
                time.sleep(0.02)

    sampler = threading.Thread(target=sample_database_connections)
    sampler.start()
    try:
        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(deliver, range(200)))
    finally:
        done.set()
        sampler.join(10)
    statuses = sorted(a.status_code for a in answers)
    assert all(s < 500 or s == 503 for s in statuses), statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers.get("Retry-After"), answer.text
    assert statuses.count(202) >= 190, statuses
    # The deliveries share a few threads, each with one database connection (plus the
    # sampler's, the session worker's and the flusher's), not a connection each.
    assert peak[0] <= 30, peak[0]
    # The sync client's pool plus the event loop's pool and its subscriber.
    pool_size = int(settings.TASKTRAIL.get("REDIS_POOL_SIZE", 8))
    assert _tasktrail_connections(_listener_pid(acceptance_server)) <= 2 * pool_size + 1
