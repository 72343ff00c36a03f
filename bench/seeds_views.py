"""The seeds' hand-written patterns, as baselines (``../shared/seeds/``).

- :func:`seeds_stream`: the stream of seed 000: a pub/sub subscription per client and
  a loop that polls it (``get_message(timeout=0.1)``) while ``AsyncResult.state`` is
  PENDING or STARTED. It is a blocking generator, so (as under a threaded WSGI server)
  each client gets a thread of its own.
- :func:`seeds_status`: the status view of seed 002 (``AsyncResult`` per request).
- :func:`progress_poll`: what celery-progress's polling endpoint returns.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from celery.result import AsyncResult
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse

from bench import settings as bench_settings

_pool = redis.ConnectionPool.from_url(f"{bench_settings.REDIS}/13", max_connections=20_000)
_threads = ThreadPoolExecutor(max_workers=12_000, thread_name_prefix="seeds-client")
_END = object()


def _stream(task_id: str) -> Iterator[bytes]:
    connection = redis.Redis(connection_pool=_pool)
    pubsub = connection.pubsub()
    pubsub.subscribe(f"{bench_settings.PREFIX}:seeds:{task_id}")
    try:
        yield b'event: state\ndata: {"status": "subscribed"}\n\n'
        while AsyncResult(task_id).state in ("PENDING", "STARTED"):
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                data = json.loads(message["data"].decode("utf-8"))
                body = json.dumps(data["payload"])
                yield f"event: {data['event_type']}\ndata: {body}\n\n".encode()
        yield b'event: state\ndata: {"status": "finished"}\n\n'
    finally:
        pubsub.unsubscribe()
        pubsub.close()


async def _in_thread(generator: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Drive a blocking generator from its own thread, as a threaded WSGI server would."""
    step: Future[Any] | None = None
    try:
        while True:
            step = _threads.submit(next, generator, _END)
            chunk = await asyncio.wrap_future(step)
            if chunk is _END:
                return
            yield chunk
    finally:
        # Close the generator once its thread has left it (it may be mid-``next()``).
        if step is not None:
            step.add_done_callback(lambda _: _threads.submit(generator.close))


async def seeds_stream(request: HttpRequest, task_id: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_in_thread(_stream(task_id)), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


def seeds_status(request: HttpRequest, task_id: str) -> JsonResponse:
    task = AsyncResult(task_id)
    if task.state == "SUCCESS":
        return JsonResponse({"status": "completed", "result": task.result})
    if task.state == "PENDING":
        return JsonResponse({"status": "processing"})
    if task.state == "FAILURE":
        return JsonResponse({"status": "failed", "error": str(task.info)}, status=500)
    return JsonResponse({"status": task.state.lower()})


def progress_poll(request: HttpRequest, task_id: str) -> JsonResponse:
    result = AsyncResult(task_id)
    info: Any = result.info
    progress = info if result.state == "PROGRESS" and isinstance(info, dict) else None
    return JsonResponse({"complete": result.ready(), "state": result.state, "progress": progress})
