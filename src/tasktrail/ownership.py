"""Who a run belongs to when it is published without ``enqueue(owner=...)``.

Existing call sites (``task.delay()``, ``apply_async(task_id=str(obj.uuid))``) need no
change: a run published while a request is handled belongs to that request's user
(:class:`~tasktrail.middleware.RunOwnerMiddleware`; DRF's authenticated user too, as
DRF sets it on the request it wraps), and :func:`owned_by` binds owner, team and
subject for code that runs outside requests (management commands, scripts). A run
published by a task inherits from its parent run already.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.db import models

logger = logging.getLogger("tasktrail")

# The bound owner, team and subject (``owned_by``), and the request being handled.
_bound: ContextVar[dict[str, str] | None] = ContextVar("tasktrail_bound_owner", default=None)
_request: ContextVar[Any] = ContextVar("tasktrail_request", default=None)


def subject_label(subject: str | models.Model) -> str:
    """``"crawl:<uuid>"`` stays as is; a model instance becomes ``"app_label.model:pk"``."""
    if isinstance(subject, models.Model):
        if subject.pk is None:
            raise ValueError("subject= needs a saved model instance (its pk is None).")
        return f"{subject._meta.label_lower}:{subject.pk}"
    text = str(subject)
    if not text or len(text) > 200 or any(c.isspace() or c in "{}" for c in text):
        raise ValueError(
            f"subject must be a non-empty label of at most 200 characters without spaces "
            f"or braces, such as 'crawl:<uuid>'; got {text!r}."
        )
    return text


def owner_id(owner: Any) -> str:
    pk = getattr(owner, "pk", owner)
    if pk is None:
        raise ValueError("owner= needs a saved user (or its primary key); its pk is None.")
    return str(pk)


def context_of(
    owner: Any = None, team: str | None = None, subject: str | models.Model | None = None
) -> dict[str, str]:
    """The publish context fields for an owner, a team and a subject (validated)."""
    context: dict[str, str] = {}
    if owner is not None:
        context["owner"] = owner_id(owner)
    if team:
        context["team"] = str(team)
    if subject is not None:
        context["subject"] = subject_label(subject)
    return context


@contextlib.contextmanager
def owned_by(
    owner: Any = None, *, team: str | None = None, subject: str | models.Model | None = None
) -> Iterator[None]:
    """Runs published inside the block (``delay()``, ``apply_async()``, ``enqueue()``
    without ``owner=``) belong to ``owner``, with this team and subject::

        with owned_by(user, subject=invoice):
            send_invoice.delay(invoice.pk)

    Without ``owner`` inside a request (``RunOwnerMiddleware``), the request's user stays
    the owner: ``owned_by(subject=...)`` only names the subject.
    """
    token = _bound.set({**(_bound.get() or {}), **context_of(owner, team, subject)})
    try:
        yield
    finally:
        _bound.reset(token)


@contextlib.contextmanager
def handling(request: Any) -> Iterator[None]:
    """The middleware's half: runs published while ``request`` is handled are its user's."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def current() -> dict[str, str]:
    """The owner context of a publish made here and now: the bound one, else the user
    of the request being handled (read only if it is known without a query in an
    event loop)."""
    bound = _bound.get() or {}
    if "owner" in bound:
        return bound
    # owned_by(subject=...) inside a request names the subject; the owner stays the user's.
    return {**_request_owner(), **bound}


def _request_owner() -> dict[str, str]:
    request = _request.get()
    if request is None:
        return {}
    try:
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return {}
        return {"owner": str(user.pk)}
    except SynchronousOnlyOperation:
        logger.debug("tasktrail: the request's user is not loaded yet in async code")
        return {}
