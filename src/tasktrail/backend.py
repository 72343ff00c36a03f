"""tasktrail as Celery's result backend: the run record *is* the result.

``CELERY_RESULT_BACKEND = "tasktrail.backend.TasktrailBackend"`` (with the Django
namespace) stores Celery's result exactly as Celery's Redis backend does, in
``TASKTRAIL['REDIS_URL']``, so ``AsyncResult``, ``.get()``, chords and
``update_state`` keep working; and every state Celery stores becomes a transition of
the run in the same Redis call. That is how states no signal reports reach the record:
``update_state`` progress and custom states, chain steps Celery fails without running
them, a chord body whose header failed, a run failed or revoked by the worker's main
process (time limits, lost pool processes, terminate).

A project that must keep another result backend mixes :class:`RecordingBackendMixin`
into that backend's class instead (see docs/reliability.md).
"""

from __future__ import annotations

import logging
import select
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import redis
from celery import states
from celery.backends.asynchronous import Drainer
from celery.backends.redis import RedisBackend
from django.core.exceptions import ImproperlyConfigured
from kombu.utils.encoding import bytes_to_str

from . import naming, outcomes, reporting
from .cluster import is_cluster_url
from .conf import settings
from .sentinel import FollowingPool, is_sentinel_url, master_pool, parse_sentinel_url
from .tracked import is_tracked
from .transitions import ANY_ATTEMPT, Applied, CeleryMeta, dumps

logger = logging.getLogger("tasktrail")

BACKEND_PATH = "tasktrail.backend.TasktrailBackend"
# How many publishes may leave their replies on the result connection unread (see
# TasktrailBackend.on_task_call): about three small replies each.
READ_REPLIES_EVERY = 64


def _context(request: Any, run_id: str) -> tuple[int, int | None]:
    """The attempt and generation a write comes from, when it is the request's own run
    (a chain step failed by its predecessor has neither)."""
    if request is None or str(getattr(request, "id", "") or "") != run_id:
        return ANY_ATTEMPT, None
    attempt = int(getattr(request, "retries", 0) or 0) + 1
    generation = getattr(request, "tasktrail_gen", None)
    return attempt, (int(generation) if generation not in (None, "") else None)


# Task names of ids Celery stores a result for without a request: a chord body whose
# header failed (``chord_error_from_stack`` knows its signature, store_result does not).
_names: ContextVar[dict[str, str] | None] = ContextVar("tasktrail_result_names", default=None)


def _create(run_id: str, request: Any) -> dict[str, str] | None:
    """Fields of a record this write may create; None for a task tasktrail does not
    track (its id still gets Celery's result, and a record only if it has one)."""
    name = ""
    if request is not None:  # named as the publish receiver names it
        name = naming.run_name(
            str(getattr(request, "task", "") or ""), getattr(request, "shadow", None)
        )
    if not name:
        name = (_names.get() or {}).get(run_id, "")
    if not name or not is_tracked(name):
        return None
    return {
        "id": run_id,
        "task": name,
        "parent": str(getattr(request, "parent_id", "") or ""),
        "root": str(getattr(request, "root_id", "") or ""),
        "group": str(getattr(request, "group", "") or ""),
    }


def _exception_fields(result: Any) -> tuple[str, str]:
    """Type and message of an exception as Celery encoded it (or a raw meta dict)."""
    if isinstance(result, BaseException):
        return outcomes.error_type(type(result)), str(result)
    if isinstance(result, Mapping) and "exc_type" in result:
        module = str(result.get("exc_module") or "builtins")
        args = result.get("exc_message")
        if isinstance(args, list | tuple):
            message = str(args[0]) if len(args) == 1 else ", ".join(str(a) for a in args)
        else:
            message = str(args or "")
        return f"{module}.{result['exc_type']}", message
    # update_state(state="FAILURE", meta={...}): no exception, only the task's meta.
    return "celery.states.FAILURE", dumps(result)


def record(
    run_id: str,
    result: Any,
    state: str,
    traceback: Any = None,
    request: Any = None,
    meta: CeleryMeta | None = None,
) -> Applied | None:
    """Turn one state Celery stores for ``run_id`` into a transition (with ``meta``,
    Celery's encoded result, stored in the same call)."""
    attempt, generation = _context(request, run_id)
    create = _create(run_id, request)
    tracker = reporting.current()
    if (
        tracker is not None
        and tracker.run_id == run_id
        and state in states.READY_STATES | {states.RETRY}
    ):
        tracker.flush()  # the last progress goes before the outcome
        tracker.recorded = True
    origin = outcomes.Origin(attempt=attempt, generation=generation, meta=meta, create=create)
    if state == states.SUCCESS:
        return outcomes.succeeded(run_id, result, origin)
    if state in (states.FAILURE, states.REVOKED):
        kind, message = _exception_fields(result)
        reason = ""
        if state == states.REVOKED:
            reason = message if message in outcomes.REASONS else "revoked"
        return outcomes.ended_with_error(
            run_id,
            origin,
            kind=kind,
            message=message,
            traceback=str(traceback or ""),
            reason=reason,
            cancelled=state == states.REVOKED or kind == "tasktrail.exceptions.RunCancelled",
        )
    if state == states.RETRY:
        kind, message = _exception_fields(result)
        return outcomes.retrying(
            run_id, origin, kind=kind, message=message, traceback=str(traceback or "")
        )
    if state in (states.PENDING, states.RECEIVED, states.STARTED):
        # Nothing the signals have not said: store Celery's meta, change nothing else.
        return outcomes.meta_only(run_id, outcomes.Origin(generation=generation, meta=meta))
    return outcomes.custom_state(run_id, state, result, origin)


class _RecordsRuns:
    """What both ways of recording share."""

    records_runs = True
    _published = 0

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Celery subscribes the publisher to each task's result channel as it publishes
        (so a later ``get()`` misses nothing), and only a waiting ``get()`` reads that
        connection. A process that publishes for long and never waits (a web server)
        leaves every reply unread until Redis drops the connection (celery/celery#3808,
        #6963) or the publisher blocks writing to it: the soak's publisher hung after
        140,000 ``delay()`` calls. So every ``READ_REPLIES_EVERY`` publishes, what Redis
        has sent is read here, through Celery's own consumer (results land where a
        later ``get()`` finds them). Backends that do not subscribe are left alone."""
        super().on_task_call(producer, task_id)  # type: ignore[misc]
        self._published += 1
        if self._published % READ_REPLIES_EVERY == 0:
            self._read_result_replies()

    def _read_result_replies(self) -> None:
        consumer: Any = getattr(self, "result_consumer", None)  # Celery's async backends
        if type(getattr(consumer, "drainer", None)) is not Drainer:
            return  # gevent's and eventlet's drainers read the connection themselves
        connection = getattr(getattr(consumer, "_pubsub", None), "connection", None)
        try:
            for _ in range(4 * READ_REPLIES_EVERY):
                # The backend is shared by the process's threads, and another one may be
                # reading this connection in get(): only the raw socket is looked at
                # here (as Celery's consumer does unlocked); drain_events reads under
                # the consumer's lock.
                sock = getattr(connection, "_sock", None)
                if sock is None or not select.select([sock], [], [], 0)[0]:
                    return
                consumer.drain_events(timeout=0)
        except (redis.RedisError, OSError, ValueError):
            return  # the next subscribe or get() reconnects, as Celery does

    def chord_error_from_stack(self, callback: Any, exc: Any = None) -> Any:
        """Celery's, with the chord body's task name known to the record it creates."""
        token = _names.set({str(getattr(callback, "id", "")): str(getattr(callback, "task", ""))})
        try:
            return super().chord_error_from_stack(callback, exc)  # type: ignore[misc]
        finally:
            _names.reset(token)


class RecordingBackendMixin(_RecordsRuns):
    """Mix into a Celery result backend so each stored state is also a transition.

    ``class Backend(RecordingBackendMixin, DatabaseBackend): ...`` keeps that backend's
    own storage and adds one Redis call per stored state.
    """

    def store_result(
        self, task_id: Any, result: Any, state: str, traceback: Any = None,
        request: Any = None, **kwargs: Any,
    ) -> Any:  # fmt: skip
        stored = super().store_result(  # type: ignore[misc]
            task_id, result, state, traceback=traceback, request=request, **kwargs
        )
        record(bytes_to_str(task_id), result, state, traceback, request)
        return stored


class TasktrailBackend(_RecordsRuns, RedisBackend):
    """Celery's Redis result backend, writing each result and its transition at once."""

    def __init__(self, *args: Any, url: str | None = None, **kwargs: Any) -> None:
        redis_url = str(settings.REDIS_URL or "")
        if not redis_url:
            raise ImproperlyConfigured(
                "tasktrail's result backend stores results in TASKTRAIL['REDIS_URL']; set it."
            )
        if is_cluster_url(redis_url):
            raise ImproperlyConfigured(
                "tasktrail's result backend is Celery's Redis backend, which cannot run on a "
                "Redis Cluster (its chords use keys of several slots at once). With "
                "TASKTRAIL['REDIS_URL'] on a cluster, keep Celery's results on a single Redis "
                "or a database and mix tasktrail.backend.RecordingBackendMixin into that "
                "backend (docs/deployment.md, Redis Cluster)."
            )
        if url and url.rstrip("/") != redis_url.rstrip("/"):
            raise ImproperlyConfigured(
                f"tasktrail's result backend uses TASKTRAIL['REDIS_URL'] ({redis_url}); "
                f"set CELERY_RESULT_BACKEND to {BACKEND_PATH!r} without a URL, not {url!r}."
            )
        # Celery's Redis backend cannot read redis+sentinel://: it gets no URL, and its
        # pools come from tasktrail's Sentinel helper (_get_pool).
        self._sentinel = parse_sentinel_url(redis_url) if is_sentinel_url(redis_url) else None
        super().__init__(  # type: ignore[misc]
            *args, url=None if self._sentinel else redis_url, **kwargs
        )
        self.url = redis_url

    def _get_pool(self, **params: Any) -> Any:
        if self._sentinel is None:
            return super()._get_pool(**params)  # type: ignore[misc]
        where = ("host", "port", "db", "username", "password", "connection_class", "path")
        options = {k: v for k, v in params.items() if k not in where}
        return master_pool(self._sentinel, FollowingPool, **options)

    def meta_for(
        self, task_id: Any, result: Any, state: str, traceback: Any = None, request: Any = None
    ) -> CeleryMeta:
        """Celery's result meta of this state, as its Redis backend would store it."""
        meta = self._get_result_meta(  # type: ignore[attr-defined]
            result=self.encode_result(result, state), state=state, traceback=traceback,
            request=request,
        )  # fmt: skip
        meta["task_id"] = bytes_to_str(task_id)
        # Celery 5.7 keeps failures for result_failure_expires; earlier ones have no such setting.
        expires: Any = self.expires  # type: ignore[attr-defined]
        if state == states.FAILURE:
            expires = getattr(self, "failure_expires", expires)
        return CeleryMeta(
            key=bytes_to_str(self.get_key_for_task(task_id)),
            value=self.encode(meta),
            ttl=int(expires or 0),
        )

    def _store_result(
        self, task_id: Any, result: Any, state: str, traceback: Any = None,
        request: Any = None, **kwargs: Any,
    ) -> Any:  # fmt: skip
        # ``result`` comes encoded (store_result did it); encoding it again is a no-op.
        meta = self.meta_for(task_id, result, state, traceback, request)
        record(bytes_to_str(task_id), result, state, traceback, request, meta=meta)
        return result
