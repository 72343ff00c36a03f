"""Who may use the dashboard: staff see it; staff with ``tasktrail.change_taskrun`` act."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import TemplateResponse

from tasktrail.access import is_staff
from tasktrail.http import query_problem

CHANGE_PERMISSION = "tasktrail.change_taskrun"

SyncView = Callable[..., HttpResponseBase]


def can_change(user: Any) -> bool:
    return is_staff(user) and bool(user.has_perm(CHANGE_PERMISSION))


def refusal(request: HttpRequest, message: str) -> HttpResponseBase:
    """Anonymous users go to the login page; others get a 403 page."""
    if not getattr(request.user, "is_authenticated", False):
        return redirect_to_login(request.get_full_path())
    return TemplateResponse(
        request, "tasktrail/dashboard/forbidden.html", {"message": message}, status=403
    )


def bad_query(request: HttpRequest) -> HttpResponseBase | None:
    """A 400 for a query string no screen can use (a NUL character, say), or None."""
    problem = query_problem(request)
    if problem is None:
        return None
    return HttpResponse(problem, status=400, content_type="text/plain; charset=utf-8")


def staff_required(view: SyncView) -> SyncView:
    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_staff(request.user):
            return refusal(request, "The tasktrail dashboard is for staff only.")
        if (refused := bad_query(request)) is not None:
            return refused
        if kwargs.get("run_id") == "":
            raise Http404("No such run.")  # the runid converter's answer to a NUL or bad escape
        return view(request, *args, **kwargs)

    return guarded


def change_required(view: SyncView) -> SyncView:
    """POST only, from staff holding ``tasktrail.change_taskrun`` (CSRF is checked by
    Django's middleware, and again here in case it is not installed)."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_staff(request.user):
            return refusal(request, "The tasktrail dashboard is for staff only.")
        if request.method != "POST":
            return HttpResponse("Use POST.", status=405, headers={"Allow": "POST"})
        if (refused := bad_query(request)) is not None:
            return refused
        if kwargs.get("run_id") == "":
            raise Http404("No such run.")
        if not can_change(request.user):
            return refusal(
                request,
                f"You can look but not act: acting needs the {CHANGE_PERMISSION} permission.",
            )
        return view(request, *args, **kwargs)

    return functools.wraps(view)(_csrf_protected(guarded))


def _csrf_protected(view: SyncView) -> SyncView:
    from django.views.decorators.csrf import csrf_protect

    return csrf_protect(view)
