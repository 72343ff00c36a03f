"""The task-facing API: ``progress()`` and ``feed()``, callable inside any task.

``progress()`` is built for hot loops: a call that falls inside the coalescing window
(``TASKTRAIL['PROGRESS_INTERVAL']``) only remembers its values; the first call after a
quiet spell is sent at once, and a timer thread sends the last remembered values when
the window closes, so the final value always arrives. ``feed()`` lines are never
coalesced or dropped.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from contextvars import ContextVar
from typing import Any, Literal

import redis

from .conf import settings
from .exceptions import RunCancelled
from .redaction import redact_text
from .transitions import Op, defer, submit

FeedLevel = Literal["info", "success", "warning", "error"]
FEED_LEVELS: frozenset[str] = frozenset({"info", "success", "warning", "error"})

logger = logging.getLogger("tasktrail")
_monotonic = time.monotonic


class Tracker:
    """Progress state of the run the current worker thread is executing."""

    __slots__ = (
        "attempt", "cancelled", "generation", "interval", "lock", "next_at", "outer",
        "pending", "recorded", "replaced", "run_id", "scheduled",
    )  # fmt: skip

    def __init__(self, run_id: str, attempt: int, generation: int | None = None) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.generation = generation
        # The attempt's outcome was recorded (by the result backend or a receiver).
        self.recorded = False
        # The task replaced itself (Task.replace): its run goes on in the replacement.
        self.replaced = False
        # The tracker of a task that runs this one in its own thread (eager), if any.
        self.outer: Tracker | None = None
        self.interval = float(settings.PROGRESS_INTERVAL)
        self.next_at = 0.0
        self.pending: tuple[float, float | None, str | None] | None = None
        self.scheduled = False
        self.cancelled = False
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.cancelled:
            raise RunCancelled(f"Run {self.run_id} was cancelled.")

    def record(self, op: Op, **kwargs: Any) -> int | None:
        """Send one transition; note a pending cancel. Return the run's generation."""
        kwargs.setdefault("generation", self.generation)
        try:
            create = {"id": self.run_id, **kwargs.pop("create", {})}
            applied = submit(self.run_id, op, attempt=self.attempt, create=create, **kwargs)
        except redis.RedisError as exc:
            defer(self.run_id, op, {"attempt": self.attempt, **kwargs}, exc)
            return None
        # Refused because the run was cancelled: stop. Refused because a newer publish of
        # the same id took over: Celery runs this execution to its end, so do we.
        if applied.cancel_requested:
            self.cancelled = True
        return applied.generation

    def update(self, current: float, total: float | None, message: str | None) -> None:
        if self.cancelled:
            self.check()
        if _monotonic() >= self.next_at:
            with self.lock:
                self.pending = None
                self._send(current, total, message)
        else:
            self.pending = (current, total, message)
            if not self.scheduled:
                self.scheduled = True
                _timer.schedule(self)

    def flush(self) -> None:
        """Send the remembered values, if any (the timer, and the end of a task)."""
        with self.lock:
            self.scheduled = False
            pending, self.pending = self.pending, None
            if pending is not None:
                self._send(*pending)

    def _send(self, current: float, total: float | None, message: str | None) -> None:
        self.next_at = _monotonic() + self.interval
        fields = {"p_current": repr(float(current))}
        data: dict[str, object] = {"run": self.run_id, "current": current}
        if total is not None:
            fields["p_total"] = repr(float(total))
            data["total"] = total
            data["percent"] = (
                round(min(100.0, max(0.0, current * 100.0 / total)), 2) if total else None
            )
        if message is not None:
            fields["p_message"] = message
            data["message"] = message
        self.record("progress", fields=fields, events=[("progress", data)])


class _Timer:
    """One daemon thread per process that sends coalesced progress when windows close."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Tracker]] = []
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._seq = 0

    def schedule(self, tracker: Tracker) -> None:
        with self._cond:
            self._ensure_thread()
            self._seq += 1
            heapq.heappush(self._queue, (tracker.next_at, self._seq, tracker))
            self._cond.notify()

    def _ensure_thread(self) -> None:
        import os

        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._queue = []
            self._thread = threading.Thread(
                target=self._run, name="tasktrail-progress", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                due, _, tracker = self._queue[0]
                wait = due - _monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._queue)
            tracker.flush()


_timer = _Timer()
_current: ContextVar[Tracker | None] = ContextVar("tasktrail_current_run", default=None)


def begin(run_id: str, attempt: int, generation: int | None = None) -> Tracker:
    """Called by the receivers when an attempt starts in this thread."""
    tracker = Tracker(run_id, attempt, generation)
    tracker.outer = _current.get()
    _current.set(tracker)
    return tracker


def current() -> Tracker | None:
    """The tracker of the attempt this thread is executing, if any."""
    return _current.get()


def end() -> Tracker | None:
    """Called by the receivers when the attempt is over (``task_postrun``)."""
    tracker = _current.get()
    if tracker is not None:
        tracker.flush()
        _current.set(tracker.outer)
    return tracker


def current_run_id() -> str | None:
    tracker = _current.get()
    return None if tracker is None else tracker.run_id


def progress(current: float, total: float | None = None, message: str | None = None) -> None:
    """Report how far the current task has come; a no-op outside a tracked task.

    ``progress(3, 10, "Parsing")`` shows 30%. Cheap enough for a hot loop. Raises
    :class:`~tasktrail.exceptions.RunCancelled` once the run was cancelled.
    """
    tracker = _current.get()
    if tracker is not None:
        tracker.update(current, total, message)


def feed(message: str, level: FeedLevel = "info") -> None:
    """Append a line for humans to the current run's feed; a no-op outside a tracked task.

    ``level`` is one of ``info``, ``success``, ``warning``, ``error``. Raises
    :class:`~tasktrail.exceptions.RunCancelled` once the run was cancelled.
    """
    if level not in FEED_LEVELS:
        raise ValueError(f"feed level must be one of {sorted(FEED_LEVELS)}, not {level!r}")
    tracker = _current.get()
    if tracker is None:
        return
    limit = int(settings.MAX_FEED_BYTES)
    text = redact_text(str(message))
    if len(text.encode()) > limit:
        text = text.encode()[:limit].decode(errors="ignore") + " [truncated]"
    tracker.check()
    tracker.record(
        "feed",
        events=[
            ("feed", {"run": tracker.run_id, "message": text, "level": level, "ts": time.time()})
        ],
    )
    tracker.check()
