"""Imported (as ``sitecustomize``) only by the skew trial's workers, which run under
libfaketime with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` so that only the wall clock moves.

libfaketime 0.9.10 (Debian's) then breaks ``clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)``, which ``time.sleep`` uses since Python 3.11: every sleep raises
``OSError: [Errno 22] Invalid argument`` (wolfcw/libfaketime#426), for instance in
Celery's timer thread at shutdown. Faking the monotonic clock too is no way out: then
``threading.Event.wait`` never returns (wolfcw/libfaketime#390). So sleep with
``select()``, which libfaketime leaves alone: the worker then behaves as on a host
whose wall clock is simply off.
"""

from __future__ import annotations

import os
import select
import time

if os.environ.get("FAKETIME"):

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = time.monotonic() + seconds
        while True:
            select.select([], [], [], max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    time.sleep = _sleep  # type: ignore[assignment]  # (a float is all Celery passes)
