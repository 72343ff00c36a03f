"""ASGI wrappers for Django's application: bounded request bodies, direct stream writes.

**Bounded request bodies.**
Django's ASGI handler reads a whole request body before any view runs, so a view's own
limit (a webhook's ``max_body_bytes``) comes too late: a 1 GB body is read to its end
first, and a ``Content-Length`` larger than the bytes that follow keeps the request
waiting for ever. Wrap the project's application once::

    from django.core.asgi import get_asgi_application
    from tasktrail.asgi import limit_request_bodies

    application = limit_request_bodies(get_asgi_application())

A body declared or found larger than ``max_bytes`` (default Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE``) is answered ``413`` at once, unread; a body that stops
arriving for ``timeout`` seconds, or is still arriving after ``total_timeout``, is
answered ``408``. Both in JSON, like the API. Without ``max_bytes``, file uploads
(``multipart/form-data``) pass through untouched: Django's limit leaves file data out
and streams files to disk.

**Direct stream writes.** tasktrail's event streams go faster, and one event reaches
thousands of clients sooner, when the hub writes live events to each client itself
(:mod:`tasktrail.direct`) rather than through Django's response iteration. That needs
the server's ``send``, which Django does not hand to views::

    application = direct_stream_writes(limit_request_bodies(get_asgi_application()))

Put it outside wrappers that only read the request, like the two above or Django's
static files handler. A wrapper between it and Django that rewrites response bodies
(compression) or holds them back is noticed, and streams then write through Django.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .direct import SEND_KEY, ServerSend

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# What the wrappers take: any ASGI application, Django's typed as its stubs have it.
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

DEFAULT_TIMEOUT = 30.0
DEFAULT_TOTAL_TIMEOUT = 120.0


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            # More digits than any limit: too large without converting thousands of digits.
            return int(text) if text.isdigit() and len(text) <= 18 else 10**18
    return None


def _is_upload(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-type":
            return bool(value.lower().startswith(b"multipart/form-data"))
    return False


def limit_request_bodies(
    app: AnyASGIApp,
    *,
    max_bytes: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
) -> ASGIApp:
    """``app`` behind a bounded body reader (see the module's docstring)."""

    def limit() -> int | None:
        if max_bytes is not None:
            return max_bytes
        from django.conf import settings

        configured = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return None if configured is None else int(configured)

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (max_bytes is None and _is_upload(scope)):
            await app(scope, receive, send)
            return
        most = limit()
        declared = _declared_length(scope)
        too_large = f"The request body is larger than {most} bytes."
        if most is not None and declared is not None and declared > most:
            await _refuse(send, 413, too_large)
            return
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total_timeout
        while True:
            try:
                wait = min(timeout, deadline - loop.time())
                message = await asyncio.wait_for(receive(), max(wait, 0))
            except TimeoutError:
                await _refuse(send, 408, "The request body did not arrive in time.")
                return
            if message["type"] == "http.disconnect":
                return  # the client left before its body arrived: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if most is not None and size > most:
                await _refuse(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            """The body once, whole; then the real channel (a disconnect, for streams)."""
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return bounded


def direct_stream_writes(app: AnyASGIApp) -> ASGIApp:
    """``app`` with the server's ``send`` in each HTTP scope, for the event streams (see
    the module's docstring)."""

    async def with_send(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        server = ServerSend(send)
        await app({**scope, SEND_KEY: server}, receive, server)

    return with_send
