"""Event streams over a real uvicorn, fed by a real worker."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from tasktrail import enqueue
from tasktrail.access import make_token
from tests.sse_client import Comment, Event, read
from tests.testapp.tasks import add, numbered_feed, sleepy

pytestmark = [pytest.mark.worker, pytest.mark.server, pytest.mark.django_db(transaction=True)]


def session_cookies(user: User) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value}


def feed_numbers(events: list[Event]) -> list[int]:
    return [int(e.data["message"].split()[1]) for e in events if e.kind == "feed"]


def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
    server: str, worker: object
) -> None:
    # The client is there first (a fresh server takes about 0.8 s over its first request).
    run = enqueue(numbered_feed, 1000, 0.002, countdown=3)
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    first: list[Event] = []
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for item in read(response):
            if isinstance(item, Event):
                first.append(item)
                if len(feed_numbers(first)) >= 300:
                    break  # the client goes away mid-run
    assert first[0].kind == "state" and "events_url" in first[0].data  # the snapshot
    last_id = first[-1].id
    second: list[Event] = []
    with httpx.stream("GET", url, headers={"Last-Event-ID": last_id}, timeout=60) as response:
        second = [item for item in read(response) if isinstance(item, Event)]
    numbers = feed_numbers(first) + feed_numbers(second)
    assert numbers == list(range(1, 1001))  # in order, none missing, none twice
    ids = [e.id for e in first[1:] + second]
    assert len(ids) == len(set(ids))
    assert [tuple(map(int, i.split("-"))) for i in ids] == sorted(
        tuple(map(int, i.split("-"))) for i in ids
    )
    assert (
        second[-1].kind == "state" and second[-1].data["status"] == "SUCCESSFUL"
    )  # then it closed
    assert any(e.kind == "result" and e.data["result"] == 1000 for e in second)


def test_last_event_id_query_parameter_resumes_too(server: str, worker: object) -> None:
    run = enqueue(numbered_feed, 20).wait(timeout=20)
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    with httpx.stream("GET", url, timeout=10) as response:
        everything = [e for e in read(response) if isinstance(e, Event)]
    # A finished run: the snapshot is terminal and the stream ends at once.
    assert [e.kind for e in everything] == ["state"]
    assert everything[0].data["status"] == "SUCCESSFUL"
    with httpx.stream("GET", f"{url}&last_event_id=0-0", timeout=10) as response:
        replay = [e for e in read(response) if isinstance(e, Event)]
    assert feed_numbers(replay) == list(range(1, 21))
    assert replay[-1].data["status"] == "SUCCESSFUL"


def test_live_stream_sends_keepalives_and_closes_after_the_terminal_state(
    server: str, worker: object
) -> None:
    run = enqueue(sleepy, 2.5)
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    started = time.monotonic()
    with httpx.stream("GET", url, timeout=30) as response:
        items = list(read(response))
    assert time.monotonic() - started < 15
    assert any(isinstance(i, Comment) and i.text == "keep-alive" for i in items)
    kinds = [(i.kind, i.data.get("status")) for i in items if isinstance(i, Event)]
    assert kinds[-1] == ("state", "SUCCESSFUL")


def test_status_and_events_are_404_for_others_over_http(server: str, worker: object) -> None:
    owner = User.objects.create_user(f"o-{uuid.uuid4().hex[:6]}", password="pw")
    stranger = User.objects.create_user(f"s-{uuid.uuid4().hex[:6]}", password="pw")
    run = enqueue(add, 1, 1, owner=owner).wait(timeout=20)
    expired = make_token(run.id, max_age=1)
    time.sleep(2.1)
    for suffix in ("", "events/"):
        url = f"{server}/tasks/{run.id}/{suffix}"
        assert httpx.get(url, cookies=session_cookies(owner)).status_code == 200
        assert httpx.get(url, cookies=session_cookies(stranger)).status_code == 404
        assert httpx.get(url).status_code == 404
        assert httpx.get(url, params={"token": expired}).status_code == 404


def test_subject_stream_shows_the_subjects_runs_the_user_may_see(
    server: str, worker: object
) -> None:
    owner = User.objects.create_user(f"o-{uuid.uuid4().hex[:6]}", password="pw")
    stranger = User.objects.create_user(f"s-{uuid.uuid4().hex[:6]}", password="pw")
    subject = f"crawl:{uuid.uuid4()}"
    received: list[Event] = []
    opened = threading.Event()

    cookies = session_cookies(owner)  # here: a thread must not open its own DB connection

    def listen() -> None:
        url = f"{server}/tasks/subjects/{subject}/events/"
        with httpx.stream("GET", url, cookies=cookies, timeout=30) as response:
            assert response.status_code == 200
            for item in read(response):
                opened.set()
                if isinstance(item, Event):
                    received.append(item)
                    if sum(1 for e in received if e.data.get("status") == "SUCCESSFUL") == 2:
                        return

    listener = threading.Thread(target=listen)
    listener.start()
    assert opened.wait(10)
    enqueue(numbered_feed, 3, owner=owner, subject=subject).wait(timeout=20)
    enqueue(numbered_feed, 5, owner=stranger, subject=subject).wait(timeout=20)
    enqueue(numbered_feed, 4, owner=owner, subject=subject).wait(timeout=20)
    listener.join(30)
    assert not listener.is_alive()
    assert sorted(feed_numbers(received)) == sorted(
        [1, 2, 3, 1, 2, 3, 4]
    )  # not the stranger's five
    assert httpx.get(f"{server}/tasks/subjects/{subject}/events/").status_code == 404


def test_redis_connections_do_not_grow_with_clients(server: str, worker: object) -> None:
    # Long enough for 40 streams to open on a loaded machine (opening them took over 4 s
    # there, and a stream opened after the end starts with the final state).
    run = enqueue(sleepy, 8)
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    ready = threading.Barrier(41)
    finished: list[str] = []

    def client() -> None:
        with httpx.stream("GET", url, timeout=30) as response:
            stream = read(response)
            items = [next(stream)]
            ready.wait(20)
            items.extend(stream)
            if any(isinstance(i, Event) and i.data.get("status") == "SUCCESSFUL" for i in items):
                finished.append("ok")

    threads = [threading.Thread(target=client) for _ in range(40)]
    for thread in threads:
        thread.start()
    ready.wait(30)
    connections = _server_connections(server.pid)  # type: ignore[attr-defined]
    for thread in threads:
        thread.join(40)
    assert len(finished) == 40
    # One subscriber plus the bounded command pool (REDIS_POOL_SIZE, 8), not one per client.
    assert connections <= 8 + 1, connections


def _server_connections(pid: int) -> int:
    """Redis connections held by the uvicorn process (tasktrail names them by pid)."""
    client: Any = redis.Redis.from_url(settings.TASKTRAIL["REDIS_URL"])
    return sum(1 for c in client.client_list() if c.get("name") == f"tasktrail-{pid}")


def test_resuming_a_finished_run_whose_events_expired_ends_with_the_final_state(
    server: str, worker: object
) -> None:
    from tasktrail import keys
    from tests.helpers import client

    run = enqueue(add, 2, 2).wait(timeout=20)
    client().delete(keys.run_stream(run.id))  # as after STREAM_TTL
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    started = time.monotonic()
    with httpx.stream("GET", url, headers={"Last-Event-ID": "1-0"}, timeout=10) as response:
        events = [e for e in read(response) if isinstance(e, Event)]
    assert time.monotonic() - started < 5  # it ended; it did not wait for more
    assert [(e.kind, e.data["status"]) for e in events] == [("state", "SUCCESSFUL")]
    assert events[0].data["result"] == 4


def test_many_streams_opening_at_once_in_a_fresh_process_all_get_live_events(
    worker: object,
) -> None:
    """The hub must start one reader, however many streams race to subscribe first."""
    from tests.conftest import running_server

    with running_server("fresh") as fresh:
        runs = [enqueue(add, i, 1, countdown=3) for i in range(30)]  # thirty channels
        endings: list[str] = []

        def follow(run_id: str) -> None:
            url = f"{fresh}/tasks/{run_id}/events/?token={make_token(run_id)}"
            with httpx.stream("GET", url, timeout=30) as response:
                for item in read(response):
                    if isinstance(item, Event) and item.data.get("status") == "SUCCESSFUL":
                        endings.append(run_id)
                        return

        threads = [threading.Thread(target=follow, args=(run.id,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(endings) == sorted(run.id for run in runs)  # each got its live end


def test_resuming_after_the_end_is_a_204_so_an_eventsource_stops(
    server: str, worker: object
) -> None:
    from tasktrail.events import END_ID

    run = enqueue(numbered_feed, 3).wait(timeout=20)
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    with httpx.stream("GET", url, headers={"Last-Event-ID": "0-0"}, timeout=10) as response:
        events = [e for e in read(response) if isinstance(e, Event)]
    assert events[-1].data["status"] == "SUCCESSFUL"
    for last in (events[-1].id, END_ID, "99999999999999-0"):  # the end, or past it
        answer = httpx.get(url, headers={"Last-Event-ID": last}, timeout=10)
        assert answer.status_code == 204, (last, answer.text)


def test_an_id_this_log_never_gave_starts_a_running_runs_stream_over(
    server: str, worker: object
) -> None:
    run = enqueue(sleepy, 1.5)
    url = f"{server}/tasks/{run.id}/events/?token={make_token(run.id)}"
    started = time.monotonic()
    ahead = {"Last-Event-ID": "99999999999999-0"}
    with httpx.stream("GET", url, headers=ahead, timeout=20) as response:
        events = [e for e in read(response) if isinstance(e, Event)]
    assert time.monotonic() - started < 10  # it ended with the run
    assert events[0].kind == "state" and "events_url" in events[0].data  # a snapshot
    assert events[-1].data["status"] == "SUCCESSFUL"


@pytest.mark.browser
def test_chromiums_eventsource_stops_after_the_terminal_state(server: str, worker: object) -> None:
    """A plain EventSource, no tasktrail.js: it reconnects after the stream closes, is
    answered 204, and stops (readyState CLOSED) instead of looping for ever."""
    import os

    from playwright.sync_api import sync_playwright

    run = enqueue(numbered_feed, 5).wait(timeout=20)
    url = f"/tasks/{run.id}/events/?token={make_token(run.id)}"
    script = """url => new Promise(done => {
        const seen = {opens: 0, states: 0};
        const source = new EventSource(url);
        source.onopen = () => { seen.opens += 1; };
        source.addEventListener("state", () => { seen.states += 1; });
        setTimeout(() => { seen.readyState = source.readyState; source.close(); done(seen); },
                   7000);
    })"""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )  # fmt: skip
            page = chromium.new_page()
            page.goto(f"{server}/tasks/{run.id}/?token={make_token(run.id)}")
            seen = page.evaluate(script, url)
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    # The snapshot (terminal), the retry 2 s later answered 204, then nothing more.
    assert seen == {"opens": 1, "states": 1, "readyState": 2}, seen
