"""limit_request_bodies at the ASGI level: file uploads keep Django's own rules, a body
that drips for ever is cut off."""

from __future__ import annotations

import asyncio
from typing import Any

from tasktrail.asgi import limit_request_bodies


def _scope(content_type: bytes, length: int) -> dict[str, Any]:
    headers = [(b"content-type", content_type), (b"content-length", str(length).encode())]
    return {"type": "http", "method": "POST", "path": "/upload/", "headers": headers}


async def _serve(app: Any, scope: dict[str, Any], chunks: list[bytes], pause: float = 0.0):
    sent: list[dict[str, Any]] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if pause:
            await asyncio.sleep(pause)
        chunk = queue.pop(0) if queue else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _echo_size() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    return app


def test_a_file_upload_past_the_form_limit_reaches_django(settings: Any) -> None:
    # DATA_UPLOAD_MAX_MEMORY_SIZE leaves file data out; Django streams files to disk.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
    body = [b"x" * 1_048_576] * 3
    scope = _scope(b"multipart/form-data; boundary=zz", 3 * 1_048_576)
    sent = asyncio.run(_serve(limit_request_bodies(_echo_size()), scope, body))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"3145728"


def test_a_json_body_past_the_limit_is_refused_unread(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = _scope(b"application/json", 5000)
    sent = asyncio.run(_serve(limit_request_bodies(_echo_size()), scope, [b"{}"]))
    assert sent[0]["status"] == 413


def test_a_body_that_drips_for_ever_is_cut_off(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10**9
    app = limit_request_bodies(_echo_size(), timeout=0.2, total_timeout=0.5)
    scope = _scope(b"application/json", 10**6)
    sent = asyncio.run(_serve(app, scope, [b"x"] * 1000, pause=0.05))
    assert sent[0]["status"] == 408
