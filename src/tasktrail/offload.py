"""Blocking work of async views (database, Celery publish) on a few threads of its own.

Under ASGI, ``sync_to_async`` gives every request a thread, and every thread that
touches the database holds a connection of its own until the request ends: a burst of
200 webhook deliveries is 200 PostgreSQL connections ("too many clients already").
Here the work shares :data:`THREADS` threads, each closing its connection after a job
(unless ``CONN_MAX_AGE`` keeps it), so a burst waits its turn instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections

THREADS = 4

_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="tasktrail-offload")


def _job[T](call: Callable[[], T]) -> T:
    close_old_connections()
    try:
        return call()
    finally:
        close_old_connections()


async def run_blocking[**P, T](fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``await run_blocking(fn, ...)``: ``fn`` on the shared threads, with the caller's
    context variables (the request's user, for instance)."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, _job, call)
