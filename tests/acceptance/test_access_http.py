"""Guarantee 4, safe by default: the access matrix over real HTTP (uvicorn).

Actors: the owner, another user, anonymous, staff, a holder of a valid run token,
of an expired one, of a token for another run, and another user holding a valid
token. Endpoints: status (GET, HEAD), events, subject events, list, cancel, retry,
plus a wrong method on each. An invisible run is a 404 whose JSON body is the one an
unknown id gets; a token lets its holder read, never act.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from tasktrail import Status, get_run
from tasktrail.access import make_token
from tasktrail.flusher import flush_all
from tasktrail.models import AuditEntry
from tasktrail.transitions import apply, stamp
from tests.acceptance.conftest import record_figure
from tests.sse_client import Event, read

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

CSRF = "a" * 32  # any 32-character secret: the cookie and the header must match
NOT_FOUND = {"error": "No run with this id."}


def make_run(owner: User, subject: str, status: str = Status.READY) -> str:
    run_id = str(uuid.uuid4())
    create = {
        "id": run_id,
        "task": "tests.testapp.tasks.add",
        "enqueued_at": stamp(time.time()),
        "args": "[1, 2]",
        "kwargs": "{}",
        "owner": str(owner.pk),
        "subject": subject,
    }
    apply(
        run_id, "publish", status=Status.READY, create=create, events=[("state", {"run": run_id})]
    )
    if status == Status.FAILED:
        apply(
            run_id, "start", attempt=1, status=Status.RUNNING, events=[("state", {"run": run_id})]
        )
        apply(
            run_id,
            "finish",
            attempt=1,
            status=Status.FAILED,
            fields={"finished_at": stamp(time.time()), "error_type": "E", "error_message": "m"},
            events=[("state", {"run": run_id})],
        )
    return run_id


def session(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@dataclass(frozen=True)
class Actor:
    name: str
    sessionid: str | None
    token: str | None  # "valid", "expired", "foreign" or None
    reads: bool  # may see the owner's run
    acts: bool  # may cancel and retry it
    sees_subject: bool  # receives the owner's events on the subject stream
    lists: bool  # finds the owner's runs in the list


@dataclass
class Answer:
    status: int
    content_type: str
    body: Any
    text: str


def call(
    base: str, actor: Actor, method: str, path: str, tokens: dict[str, str], stream: bool = False
) -> Answer:
    cookies = {"csrftoken": CSRF}
    if actor.sessionid:
        cookies["sessionid"] = actor.sessionid
    params = {"token": tokens[actor.token]} if actor.token else {}
    headers = {"X-CSRFToken": CSRF}
    with httpx.Client(base_url=base, cookies=cookies, timeout=10) as client:
        if stream:
            with client.stream(method, path, params=params, headers=headers) as response:
                ctype = response.headers.get("content-type", "")
                if ctype.startswith("text/event-stream"):
                    events = []
                    started = time.monotonic()
                    for item in read(response):
                        if isinstance(item, Event):
                            events.append(item.data)
                        if time.monotonic() - started > 0.7 or (events and "subjects" not in path):
                            break
                    return Answer(response.status_code, ctype, events, repr(events))
                response.read()
                return Answer(response.status_code, ctype, response.json(), response.text)
        response = client.request(method, path, params=params, headers=headers)
        ctype = response.headers.get("content-type", "")
        body = response.json() if ctype == "application/json" and method != "HEAD" else None
        return Answer(response.status_code, ctype, body, response.text)


def test_access_matrix_over_http(acceptance_server: str) -> None:
    expired_made = time.time()
    owner = User.objects.create_user("owner", password="pw")
    other = User.objects.create_user("other", password="pw")
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    subject = f"acc:{uuid.uuid4().hex}"
    shown = make_run(owner, subject)  # read by everyone who may
    sibling = make_run(owner, subject)  # its token is the "foreign" one
    actors = [
        Actor("owner", session(owner), None, True, True, True, True),
        Actor("other user", session(other), None, False, False, False, False),
        Actor("anonymous", None, None, False, False, False, False),
        Actor("staff", session(staff), None, True, True, True, True),
        Actor("valid token", None, "valid", True, False, False, False),
        Actor("expired token", None, "expired", False, False, False, False),
        Actor("token of another run", None, "foreign", False, False, False, False),
        Actor("other user + valid token", session(other), "valid", True, False, False, False),
    ]
    to_cancel = {a.name: make_run(owner, subject) for a in actors}
    to_retry = {a.name: make_run(owner, subject, Status.FAILED) for a in actors}
    all_runs = [shown, sibling, *to_cancel.values(), *to_retry.values()]
    expired = {run_id: make_token(run_id, max_age=1) for run_id in all_runs}
    flush_all()  # the list reads the database
    time.sleep(max(0.0, expired_made + 2.2 - time.time()))  # signed stamps are whole seconds

    def tokens_for(run_id: str) -> dict[str, str]:
        return {
            "valid": make_token(run_id),
            "expired": expired[run_id],
            "foreign": make_token(sibling),
        }

    base = acceptance_server
    failures: list[str] = []
    cells: Counter[str] = Counter()

    def expect(actor: Actor, what: str, answer: Answer, status: int, **checks: Any) -> None:
        cells[f"{status}"] += 1
        problems = []
        if answer.status != status:
            problems.append(f"status {answer.status} != {status}")
        run_404 = status == 404 and "subject" not in what and not what.startswith("HEAD")
        if run_404 and answer.body != NOT_FOUND:
            problems.append(f"404 body {answer.body!r} differs from an unknown id's")
        if status >= 400 and not answer.content_type.startswith("application/json"):
            problems.append(f"{status} is {answer.content_type}, not JSON")
        for name, ok in checks.items():
            if not ok:
                problems.append(name)
        if problems:
            failures.append(
                f"{actor.name:26} {what:32} {'; '.join(problems)} :: {answer.text[:160]}"
            )

    unknown = str(uuid.uuid4())
    for actor in actors:
        tokens = tokens_for(shown)
        read_status = 200 if actor.reads else 404
        # status, GET and HEAD
        answer = call(base, actor, "GET", f"/tasks/{shown}/", tokens)
        expect(
            actor, "GET status", answer, read_status,
            shows_the_run=not actor.reads or answer.body.get("id") == shown,
        )  # fmt: skip
        answer = call(base, actor, "HEAD", f"/tasks/{shown}/", tokens)
        expect(actor, "HEAD status", answer, read_status)
        answer = call(base, actor, "GET", f"/tasks/{unknown}/", tokens)
        expect(actor, "GET status (unknown id)", answer, 404)
        # events
        answer = call(base, actor, "GET", f"/tasks/{shown}/events/", tokens, stream=True)
        expect(
            actor, "GET events", answer, read_status,
            snapshot_first=not actor.reads or answer.body[0].get("id") == shown,
        )  # fmt: skip
        # subject events: sessions only; others' events filtered out
        answer = call(base, actor, "GET", f"/tasks/subjects/{subject}/events/", tokens, True)
        authenticated = actor.sessionid is not None
        leaked = shown in answer.text or sibling in answer.text
        expect(
            actor, "GET subject events", answer, 200 if authenticated else 404,
            sees_what_it_may=(leaked == actor.sees_subject) if authenticated else not leaked,
        )  # fmt: skip
        # list
        answer = call(base, actor, "GET", "/tasks/", tokens)
        listed = shown in answer.text
        expect(actor, "GET list", answer, 200, lists_what_it_may=listed == actor.lists)
        # cancel
        target = to_cancel[actor.name]
        answer = call(base, actor, "POST", f"/tasks/{target}/cancel/", tokens_for(target))
        act_status = 200 if actor.acts else 403 if actor.reads else 404
        after = get_run(target).status
        expect(
            actor, "POST cancel", answer, act_status,
            effect=after == (Status.CANCELLED if actor.acts else Status.READY),
        )  # fmt: skip
        # retry
        target = to_retry[actor.name]
        answer = call(base, actor, "POST", f"/tasks/{target}/retry/", tokens_for(target))
        expect(
            actor, "POST retry", answer, 202 if actor.acts else act_status,
            new_run=not actor.acts or answer.body.get("retry_of") == target,
        )  # fmt: skip
        # wrong methods: a JSON 405 whoever asks (it tells nothing about the run)
        for method, path in (
            ("POST", f"/tasks/{shown}/"),
            ("DELETE", f"/tasks/{shown}/"),
            ("POST", f"/tasks/{shown}/events/"),
            ("POST", f"/tasks/subjects/{subject}/events/"),
            ("PUT", "/tasks/"),
            ("GET", f"/tasks/{shown}/cancel/"),
            ("GET", f"/tasks/{shown}/retry/"),
        ):
            answer = call(base, actor, method, path, tokens)
            expect(actor, f"{method} {path.replace(shown, '<id>')}", answer, 405)

    audited = Counter(
        AuditEntry.objects.filter(run_id__in=all_runs).values_list("action", flat=True)
    )
    assert audited == {"cancel": 2, "retry": 2}  # owner and staff, nobody else
    record_figure("access matrix", actors=len(actors), requests=sum(cells.values()))
    assert not failures, "\n" + "\n".join(failures)


def test_a_post_without_csrf_is_refused_with_json(acceptance_server: str) -> None:
    owner = User.objects.create_user("owner", password="pw")
    run_id = make_run(owner, f"acc:{uuid.uuid4().hex}")
    response = httpx.post(
        f"{acceptance_server}/tasks/{run_id}/cancel/",
        cookies={"sessionid": session(owner)},
        timeout=10,
    )
    assert response.status_code == 403  # refused: the run is untouched
    assert get_run(run_id).status == Status.READY
    assert response.headers["content-type"] == "application/json", response.text[:200]
