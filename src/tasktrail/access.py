"""Who may see a run: its owner, staff, or the holder of a signed per-run token.

Everyone else is told the run does not exist (404), so a missing id and a forbidden
id look the same.
"""

from __future__ import annotations

from typing import Any

from django.core import signing

from .conf import settings
from .records import RunData

_SALT = "tasktrail.run-token"


def make_token(run_id: str, max_age: int | None = None) -> str:
    """A token for ``?token=``; ``max_age`` (seconds) defaults to ``TOKEN_MAX_AGE``."""
    age = int(settings.TOKEN_MAX_AGE if max_age is None else max_age)
    return signing.dumps({"run": run_id, "age": age}, salt=_SALT, compress=False)


def token_allows(token: str | None, run_id: str) -> bool:
    if not token or len(token) > 512:
        return False
    try:
        claim = signing.loads(token, salt=_SALT, max_age=None)
        age = int(claim["age"])
        signing.loads(token, salt=_SALT, max_age=age)
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return False
    return bool(claim.get("run") == run_id)


def is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def can_view(user: Any, run: RunData, token: str | None = None) -> bool:
    if is_staff(user):
        return True
    owner = run.owner_id
    if getattr(user, "is_authenticated", False) and owner is not None and str(user.pk) == owner:
        return True
    return token_allows(token, run.id)


def can_act(user: Any, run: RunData) -> bool:
    """Cancel and retry: the owner or staff (a read token is not enough)."""
    owner = run.owner_id
    return is_staff(user) or (
        getattr(user, "is_authenticated", False) and owner is not None and str(user.pk) == owner
    )


def can_view_event(user: Any, owner: str, token_run: str | None = None, run: str = "") -> bool:
    """For shared streams (subject, firehose): may this user see an event of this owner?"""
    if is_staff(user):
        return True
    if getattr(user, "is_authenticated", False) and owner and str(user.pk) == owner:
        return True
    return token_run is not None and token_run == run
