"""One audit entry per operator action: who (a user, or "system"/"cli:..." for calls
without one), from where, on which run (empty for queue, group and schedule actions),
and what, in ``detail``."""

from __future__ import annotations

from typing import Any


def actor_name(actor: Any) -> str:
    if actor is None:
        return "system"
    return str(getattr(actor, "get_username", lambda: actor)())


def record(
    action: str, actor: Any, address: str | None = None, *, run_id: str = "", **detail: Any
) -> None:
    from .models import AuditEntry

    AuditEntry.objects.create(
        run_id=run_id,
        action=action,
        actor=actor if getattr(actor, "pk", None) is not None else None,
        actor_name=actor_name(actor),
        address=address or None,
        detail=without_nul(detail),
    )


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters replaced (PostgreSQL's jsonb refuses them, and an
    action that already happened must still be recorded)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def from_request(request: Any, action: str, **detail: Any) -> None:
    """An entry for an action a dashboard request made."""
    record(action, request.user, request.META.get("REMOTE_ADDR") or None, **detail)
