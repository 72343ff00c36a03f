"""``CanSeeRun`` / ``CanActOnRun``: tasktrail's access rules as DRF object permissions."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from ...access import can_act, can_view
from ...records import RunData


class CanSeeRun(BasePermission):  # type: ignore[misc]
    """The owner, staff, or the holder of the run's ``?token=`` may read a run."""

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        if not isinstance(obj, RunData):
            return True
        return can_view(request.user, obj, request.query_params.get("token"))


class CanActOnRun(BasePermission):  # type: ignore[misc]
    """Only the owner or staff may cancel or retry a run (a read token is not enough)."""

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return not isinstance(obj, RunData) or can_act(request.user, obj)
