"""Webhook intake: verify the signature, de-duplicate, enqueue, answer ``202`` fast.

::

    from tasktrail.webhooks import HmacSha256, webhook_view

    payment_webhook = webhook_view(
        process_payment,
        provider=HmacSha256(name="paystack", secrets=lambda: [settings.PAYSTACK_SECRET],
                            event_id="reference"),
        kwargs=lambda payload: {"reference": payload["reference"]},
    )

Every delivery is checked before anything else happens: the body size (413), the
signature (401 when missing, 400 when wrong, compared in constant time) and, for
providers that sign a timestamp, its age (400 outside the tolerance, which bounds
replays). The provider's event id becomes tasktrail's ``idempotency_key``, an
atomic Redis ``SET NX`` claim that maps the key to one deterministic run id, so
the same event delivered ten times at once, or replayed later, is one run. A
rejected delivery enqueues nothing. Errors are JSON: ``{"error": ..., "code": ...}``.

Providers are pluggable: subclass :class:`Provider` (``verify`` and ``event_id``),
or use :class:`HmacSha256` (a signature header plus an optional timestamp header),
:class:`StripeSignature` (``t=...,v1=...``) or :class:`GitHubSignature`
(``sha256=...``, event id from ``X-GitHub-Delivery``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from kombu.exceptions import OperationalError

from .exceptions import TasktrailError
from .http import json_errors
from .offload import run_blocking

logger = logging.getLogger("tasktrail")

DEFAULT_MAX_BODY = 256 * 1024
DEFAULT_TOLERANCE = 300
_TIMESTAMP = re.compile(r"-?[0-9]{1,12}")

Secrets = Sequence[str] | Callable[[], Sequence[str]]


class WebhookRejected(TasktrailError):
    """A delivery that must not be processed; ``status`` and ``code`` go into the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def response(self) -> JsonResponse:
        return JsonResponse({"error": str(self), "code": self.code}, status=self.status)


def missing(header: str) -> WebhookRejected:
    return WebhookRejected(401, "missing_signature", f"The {header} header is missing.")


def bad_signature(why: str = "The signature does not match the body.") -> WebhookRejected:
    return WebhookRejected(400, "bad_signature", why)


def _secrets(secrets: Secrets) -> list[bytes]:
    values = list(secrets() if callable(secrets) else secrets)
    if not values or not all(values):
        raise TasktrailError("A webhook provider needs at least one non-empty secret.")
    return [s.encode() for s in values]


def sign(secret: str, message: bytes, encoding: Literal["hex", "base64"] = "hex") -> str:
    """HMAC-SHA256 of ``message``; what a sender (or a test) puts in the header."""
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def _matches(secrets: Secrets, message: bytes, candidates: Sequence[str], encoding: str) -> bool:
    """Constant-time comparison of every candidate against every secret (rotation)."""
    decoded: list[bytes] = []
    for candidate in candidates:
        try:
            if encoding == "hex":
                decoded.append(bytes.fromhex(candidate.strip()))
            else:
                decoded.append(base64.b64decode(candidate.strip(), validate=True))
        except (ValueError, binascii.Error):
            continue
    found = False
    for secret in _secrets(secrets):
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        for signature in decoded:
            found |= hmac.compare_digest(expected, signature)
    return found


def check_timestamp(value: str, tolerance: int, now: float | None = None) -> None:
    """Refuse a signed timestamp (epoch seconds) further than ``tolerance`` from now."""
    # ASCII digits, a few of them: int() takes "١٢٣" and 400 digits, and a float of
    # the latter overflows when compared with the clock.
    if not _TIMESTAMP.fullmatch(value.strip()):
        raise bad_signature("The signature timestamp is not a whole number of seconds.")
    stamp = int(value)
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        raise WebhookRejected(
            400,
            "stale_timestamp",
            f"The signature timestamp is more than {tolerance} seconds from now.",
        )


def json_path(payload: Any, path: str) -> Any:
    """``payload["data"]["reference"]`` for ``"data.reference"``; ``None`` if absent."""
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class Provider:
    """How one provider signs and names its events. Subclass to plug another one in."""

    name: str = "webhook"

    def verify(self, request: HttpRequest, body: bytes) -> None:
        """Raise :class:`WebhookRejected` unless the delivery is authentic and fresh."""
        raise NotImplementedError

    def event_id(self, request: HttpRequest, payload: Any) -> str | None:
        """The provider's id of this event (the de-duplication key)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class HmacSha256(Provider):
    """``signature_header`` = HMAC-SHA256 of ``"<timestamp>.<body>"`` (or of the body
    alone when ``timestamp_header`` is ``None``), hex or base64, with an optional
    ``prefix`` such as ``"sha256="``. ``event_id`` is a dotted path into the JSON body;
    ``event_id_header`` takes the id from a header instead.
    """

    name: str = "webhook"
    secrets: Secrets = field(repr=False)
    signature_header: str = "X-Signature"
    timestamp_header: str | None = "X-Signature-Timestamp"
    prefix: str = ""
    encoding: Literal["hex", "base64"] = "hex"
    tolerance: int = DEFAULT_TOLERANCE
    event_id_path: str = "id"
    event_id_header: str | None = None

    def signed_message(self, timestamp: str | None, body: bytes) -> bytes:
        return body if timestamp is None else timestamp.encode() + b"." + body

    def verify(self, request: HttpRequest, body: bytes) -> None:
        header = request.headers.get(self.signature_header)
        if not header:
            raise missing(self.signature_header)
        timestamp = None
        if self.timestamp_header is not None:
            timestamp = request.headers.get(self.timestamp_header)
            if not timestamp:
                raise missing(self.timestamp_header)
        if self.prefix and not header.startswith(self.prefix):
            raise bad_signature(f"The signature must start with {self.prefix!r}.")
        candidate = header[len(self.prefix) :]
        if not _matches(
            self.secrets, self.signed_message(timestamp, body), [candidate], self.encoding
        ):
            raise bad_signature()
        if timestamp is not None:
            check_timestamp(timestamp, self.tolerance)

    def event_id(self, request: HttpRequest, payload: Any) -> str | None:
        if self.event_id_header is not None:
            return request.headers.get(self.event_id_header)
        value = json_path(payload, self.event_id_path)
        return None if value is None or isinstance(value, dict | list) else str(value)


@dataclass(frozen=True, kw_only=True)
class StripeSignature(HmacSha256):
    """Stripe's scheme: ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]`` over ``"t.body"``."""

    name: str = "stripe"
    signature_header: str = "Stripe-Signature"
    timestamp_header: str | None = None
    event_id_path: str = "id"

    def verify(self, request: HttpRequest, body: bytes) -> None:
        header = request.headers.get(self.signature_header)
        if not header:
            raise missing(self.signature_header)
        items = [part.partition("=") for part in header.split(",")]
        stamps = [value for key, _, value in items if key.strip() == "t"]
        signatures = [value for key, _, value in items if key.strip() == "v1"]
        if len(stamps) != 1 or not signatures:
            raise bad_signature("The signature header needs one t= and at least one v1=.")
        message = stamps[0].encode() + b"." + body
        if not _matches(self.secrets, message, signatures, "hex"):
            raise bad_signature()
        check_timestamp(stamps[0], self.tolerance)


@dataclass(frozen=True, kw_only=True)
class GitHubSignature(HmacSha256):
    """GitHub's scheme: ``X-Hub-Signature-256: sha256=<hex>`` over the body; no timestamp,
    so replays are caught by the delivery id (``X-GitHub-Delivery``) alone."""

    name: str = "github"
    signature_header: str = "X-Hub-Signature-256"
    timestamp_header: str | None = None
    prefix: str = "sha256="
    event_id_header: str | None = "X-GitHub-Delivery"


def _read_body(request: HttpRequest, limit: int) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or ""
    too_big = WebhookRejected(413, "too_large", f"The body is larger than {limit} bytes.")
    if length.isdigit() and int(length) > limit:
        raise too_big
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_big from None
    if len(body) > limit:
        raise too_big
    return body


def _payload(request: HttpRequest, body: bytes) -> Any:
    content_type = request.content_type or ""
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise WebhookRejected(415, "unsupported_type", "The body must be application/json.")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested past the stack: not ours
        raise WebhookRejected(400, "bad_json", "The body is not valid JSON.") from None


@dataclass(frozen=True, kw_only=True)
class Intake:
    """What :func:`webhook_view` does once a delivery is verified (kept for reuse)."""

    task: Any
    provider: Provider
    args: Callable[[Any], Sequence[Any]] | None = None
    kwargs: Callable[[Any], dict[str, Any]] | None = None
    owner: Callable[[Any], Any] | None = None
    subject: Callable[[Any], Any] | None = None
    celery_options: dict[str, Any] = field(default_factory=dict)

    def idempotency_key(self, event_id: str) -> str:
        return f"webhook:{self.provider.name}:{self.task.name}:{event_id}"

    def enqueue(self, payload: Any, event_id: str) -> Any:
        from .enqueueing import enqueue

        try:
            args = tuple(self.args(payload)) if self.args else ()
            kwargs = dict(self.kwargs(payload)) if self.kwargs else {}
            if self.args is None and self.kwargs is None:
                kwargs = {"payload": payload}
            owner = self.owner(payload) if self.owner else None
            subject = self.subject(payload) if self.subject else None
        except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as exc:
            raise WebhookRejected(
                400, "bad_payload", f"The payload lacks a field the task needs: {exc!r}."
            ) from None
        key = self.idempotency_key(event_id)
        try:
            return enqueue(
                self.task,
                *args,
                kwargs=kwargs,
                owner=owner,
                subject=subject,
                idempotency_key=key,
                **self.celery_options,
            )
        except (OperationalError, redis.RedisError) as exc:
            self._release(key)
            logger.error("tasktrail: webhook %s not enqueued: %s", event_id, exc)
            raise WebhookRejected(
                503, "unavailable", "The queue is unavailable; deliver again later."
            ) from None

    @staticmethod
    def _release(key: str) -> None:
        """Free a claimed key whose run was never published, so a redelivery can run."""
        from . import keys
        from .connection import get_redis
        from .enqueueing import run_id_for_key
        from .runs import find_run

        try:
            if find_run(run_id_for_key(key)) is None:
                get_redis().delete(keys.idempotency(key))
        except redis.RedisError:
            pass


def webhook_view(
    task: Any,
    *,
    provider: Provider,
    args: Callable[[Any], Sequence[Any]] | None = None,
    kwargs: Callable[[Any], dict[str, Any]] | None = None,
    owner: Callable[[Any], Any] | None = None,
    subject: Callable[[Any], Any] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    **celery_options: Any,
) -> Callable[..., Any]:
    """A CSRF-exempt async view that takes one provider's deliveries for ``task``.

    ``args``/``kwargs`` map the JSON payload to the task's arguments (default:
    ``payload=<the whole body>``); ``owner``/``subject`` map it to the run's owner and
    subject. Other keywords are Celery options for ``enqueue``. Answers ``202`` with
    ``{"id", "status", "event_id"}``: the same ``id`` for every delivery of one event.
    """
    intake = Intake(
        task=task,
        provider=provider,
        args=args,
        kwargs=kwargs,
        owner=owner,
        subject=subject,
        celery_options=celery_options,
    )

    async def view(request: HttpRequest) -> HttpResponseBase:
        if request.method != "POST":
            response = JsonResponse(
                {"error": "Webhooks are delivered with POST.", "code": "method"}, status=405
            )
            response["Allow"] = "POST"
            return response
        try:
            body = _read_body(request, max_body_bytes)
            provider.verify(request, body)
            payload = _payload(request, body)
            event_id = provider.event_id(request, payload)
            if not event_id or len(event_id) > 200:
                raise WebhookRejected(
                    400, "no_event_id", "The delivery carries no usable event id."
                )
            run = await run_blocking(intake.enqueue, payload, event_id)  # bounded threads
        except WebhookRejected as rejected:
            return rejected.response()
        return JsonResponse(
            {"id": run.id, "status": run.status.value, "event_id": event_id}, status=202
        )

    view.__name__ = f"{getattr(task, '__name__', 'task')}_webhook"
    view.__qualname__ = view.__name__
    return transaction.non_atomic_requests(csrf_exempt(json_errors(view)))  # see http.allow
