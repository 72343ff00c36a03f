"""tasktrail.webhooks: signature schemes, rejections that enqueue nothing, de-duplication."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.http import HttpResponse
from django.test import AsyncRequestFactory

from tasktrail import keys
from tasktrail.connection import get_redis
from tasktrail.enqueueing import run_id_for_key
from tasktrail.runs import find_run
from tasktrail.webhooks import (
    GitHubSignature,
    HmacSha256,
    StripeSignature,
    WebhookRejected,
    sign,
    webhook_view,
)
from tests.testapp.tasks import echo

SECRET = "whsec-test"
PROVIDER = HmacSha256(name="shop", secrets=[SECRET], event_id_path="data.reference")
factory = AsyncRequestFactory()


def _body(reference: str, **extra: Any) -> bytes:
    return json.dumps({"data": {"reference": reference, "amount": "9.99", **extra}}).encode()


def _headers(body: bytes, secret: str = SECRET, stamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if stamp is None else stamp)
    return {
        "X-Signature-Timestamp": ts,
        "X-Signature": sign(secret, ts.encode() + b"." + body),
    }


def _view(**options: Any) -> Any:
    return webhook_view(
        echo, provider=PROVIDER, kwargs=lambda p: {"value": p["data"]["reference"]}, **options
    )


def _deliver(view: Any, body: bytes, headers: dict[str, str], **kw: Any) -> HttpResponse:
    request = factory.post(
        "/hook/",
        data=body,
        content_type=kw.pop("content_type", "application/json"),
        headers=dict(headers),
    )
    try:
        response: HttpResponse = async_to_sync(view)(request)
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()  # a pool thread's own connections (the idempotency claim)
    return response


def _run_id(reference: str) -> str:
    return run_id_for_key(f"webhook:shop:{echo.name}:{reference}")


def _assert_nothing_enqueued(reference: str) -> None:
    assert find_run(_run_id(reference)) is None
    key = f"webhook:shop:{echo.name}:{reference}"
    assert get_redis().exists(keys.idempotency(key)) == 0


# --- signature schemes (no Redis needed) --------------------------------------------


class FakeRequest:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def test_hmac_accepts_any_current_secret_during_rotation() -> None:
    provider = HmacSha256(secrets=lambda: ["old", "new"], timestamp_header=None)
    body = b'{"id": 1}'
    provider.verify(FakeRequest({"X-Signature": sign("old", body)}), body)  # type: ignore[arg-type]
    provider.verify(FakeRequest({"X-Signature": sign("new", body)}), body)  # type: ignore[arg-type]
    with pytest.raises(WebhookRejected) as caught:
        provider.verify(FakeRequest({"X-Signature": sign("other", body)}), body)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (400, "bad_signature")


def test_hmac_refuses_a_body_changed_after_signing() -> None:
    provider = HmacSha256(secrets=[SECRET], timestamp_header=None, encoding="base64")
    signature = sign(SECRET, b'{"amount": 1}', "base64")
    with pytest.raises(WebhookRejected):
        provider.verify(FakeRequest({"X-Signature": signature}), b'{"amount": 100}')  # type: ignore[arg-type]


def test_stripe_scheme_checks_every_v1_and_the_timestamp() -> None:
    provider = StripeSignature(secrets=[SECRET], tolerance=300)
    body = b'{"id": "evt_1"}'
    now = int(time.time())
    good = sign(SECRET, f"{now}.".encode() + body)
    header = f"t={now},v1=deadbeef,v1={good}"
    provider.verify(FakeRequest({"Stripe-Signature": header}), body)  # type: ignore[arg-type]
    old = now - 301
    stale = f"t={old},v1={sign(SECRET, f'{old}.'.encode() + body)}"
    with pytest.raises(WebhookRejected) as caught:
        provider.verify(FakeRequest({"Stripe-Signature": stale}), body)  # type: ignore[arg-type]
    assert caught.value.code == "stale_timestamp"
    with pytest.raises(WebhookRejected) as caught:
        provider.verify(FakeRequest({"Stripe-Signature": f"v1={good}"}), body)  # type: ignore[arg-type]
    assert caught.value.code == "bad_signature"


def test_github_scheme_needs_the_prefix_and_takes_the_delivery_header() -> None:
    provider = GitHubSignature(secrets=[SECRET])
    body = b'{"zen": "ok"}'
    request = FakeRequest(
        {"X-Hub-Signature-256": "sha256=" + sign(SECRET, body), "X-GitHub-Delivery": "d-1"}
    )
    provider.verify(request, body)  # type: ignore[arg-type]
    assert provider.event_id(request, {}) == "d-1"  # type: ignore[arg-type]
    with pytest.raises(WebhookRejected):
        provider.verify(FakeRequest({"X-Hub-Signature-256": sign(SECRET, body)}), body)  # type: ignore[arg-type]


def test_an_empty_secret_is_a_configuration_error_not_a_pass() -> None:
    provider = HmacSha256(secrets=[""], timestamp_header=None)
    with pytest.raises(Exception, match="non-empty secret"):
        provider.verify(FakeRequest({"X-Signature": sign("", b"{}")}), b"{}")  # type: ignore[arg-type]


# --- the view: rejections enqueue nothing -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h, b: h | {"X-Signature": "00" * 32}, 400, "bad_signature"),
        (lambda h, b: h | {"X-Signature": "not hex"}, 400, "bad_signature"),
        (lambda h, b: {"X-Signature-Timestamp": h["X-Signature-Timestamp"]}, 401,
         "missing_signature"),
        (lambda h, b: {"X-Signature": h["X-Signature"]}, 401, "missing_signature"),
        (lambda h, b: _headers(b, stamp=int(time.time()) - 301), 400, "stale_timestamp"),
        (lambda h, b: _headers(b, stamp=int(time.time()) + 301), 400, "stale_timestamp"),
        (lambda h, b: _headers(b, secret="guess"), 400, "bad_signature"),
    ],
    ids=["wrong", "garbage", "no-signature", "no-timestamp", "old", "future", "other-secret"],
)  # fmt: skip
def test_rejected_deliveries_answer_json_and_enqueue_nothing(
    mutate: Any, status: int, code: str
) -> None:
    reference = f"ref-{uuid.uuid4().hex}"
    body = _body(reference)
    response = _deliver(_view(), body, mutate(_headers(body), body))
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["code"] == code
    _assert_nothing_enqueued(reference)


@pytest.mark.django_db
def test_oversize_bad_json_missing_id_and_wrong_method() -> None:
    view = _view(max_body_bytes=200)
    reference = f"ref-{uuid.uuid4().hex}"
    big = _body(reference, note="x" * 300)
    assert _deliver(view, big, _headers(big)).status_code == 413
    broken = b'{"data": '
    assert _deliver(view, broken, _headers(broken)).status_code == 400
    anonymous = json.dumps({"data": {"amount": 1}}).encode()
    response = _deliver(view, anonymous, _headers(anonymous))
    assert (response.status_code, json.loads(response.content)["code"]) == (400, "no_event_id")
    text = _body(reference)
    assert _deliver(view, text, _headers(text), content_type="text/plain").status_code == 415
    get = async_to_sync(view)(factory.get("/hook/"))
    assert (get.status_code, get["Allow"]) == (405, "POST")
    _assert_nothing_enqueued(reference)


@pytest.mark.django_db
def test_a_payload_the_task_cannot_take_is_a_400() -> None:
    view = webhook_view(echo, provider=PROVIDER, kwargs=lambda p: {"value": p["data"]["missing"]})
    body = _body(f"ref-{uuid.uuid4().hex}")
    response = _deliver(view, body, _headers(body))
    assert (response.status_code, json.loads(response.content)["code"]) == (400, "bad_payload")


# --- the view: accepted deliveries, de-duplicated ----------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_twenty_concurrent_deliveries_are_one_run_processed_once(worker: object) -> None:
    reference = f"ref-{uuid.uuid4().hex}"
    body = _body(reference)
    headers = _headers(body)
    view = _view()
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: _deliver(view, body, headers), range(20)))
    assert [r.status_code for r in responses] == [202] * 20, responses[0].content
    ids = {json.loads(r.content)["id"] for r in responses}
    assert ids == {_run_id(reference)}
    assert {json.loads(r.content)["event_id"] for r in responses} == {reference}
    run = find_run(ids.pop())
    assert run is not None
    finished = run.wait(timeout=30)
    assert finished.status == "SUCCESSFUL"
    assert finished.result == reference
    assert finished.attempts == 1
    # Published once, started once: one READY and one RUNNING state in the run's events.
    events = get_redis().xrange(keys.run_stream(run.id))
    states = [json.loads(v[b"data"])["status"] for _, v in events if v[b"kind"] == b"state"]
    assert states.count("READY") == 1
    assert states.count("RUNNING") == 1
    replay = _deliver(view, body, _headers(body))  # a later redelivery, freshly signed
    assert json.loads(replay.content)["id"] == run.id
    assert get_redis().xlen(keys.run_stream(run.id)) == len(events)
