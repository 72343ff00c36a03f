"""Who is asking: the run endpoints authenticate the way the project does.

- With Django REST framework installed (``"rest_framework"`` in ``INSTALLED_APPS``),
  through its ``DEFAULT_AUTHENTICATION_CLASSES`` (Token, Basic, JWT, session), with
  CSRF enforced only where the credential is a session cookie, exactly as DRF does.
- Without it, Django's session, with Django's CSRF check on actions.
- ``TASKTRAIL["AUTHENTICATION_CLASSES"]`` names other DRF-style authenticators (dotted
  paths); ``[]`` means Django's session even with DRF installed.

Failures answer in JSON like every other error of the API: a bad credential is a 401
(with ``WWW-Authenticate`` when the authenticator names one), a failed CSRF check a 403.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware

from .conf import settings
from .http import error


async def authenticate(request: HttpRequest, *, acting: bool = False) -> Any:
    """The user making the request, or the JSON error response that refuses it.

    ``acting``: the request changes something (cancel, retry): a session credential
    must then pass the CSRF check."""
    classes = _authentication_classes()
    if classes is None:
        if acting and (refused := csrf_failure(request)) is not None:
            return refused
        auser = getattr(request, "auser", None)
        return await auser() if auser is not None else AnonymousUser()
    from .contrib.rest_framework.authentication import authenticate as with_drf

    return await sync_to_async(with_drf)(request, classes)


def _authentication_classes() -> list[str] | None:
    """Dotted paths of DRF authenticators to use, or None for Django's session."""
    configured = settings.AUTHENTICATION_CLASSES
    if configured is not None:
        return list(configured) or None
    if apps.is_installed("rest_framework"):
        from rest_framework.settings import api_settings

        return [
            f"{c.__module__}.{c.__qualname__}" for c in api_settings.DEFAULT_AUTHENTICATION_CLASSES
        ]
    return None


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason  # the reason, not Django's HTML page


def csrf_failure(request: HttpRequest) -> HttpResponseBase | None:
    """Django's CSRF check, answered in JSON like every other error of this API."""
    check = _CsrfCheck(lambda request: HttpResponseBase())
    check.process_request(request)
    reason = check.process_view(request, lambda request: HttpResponseBase(), (), {})
    return None if reason is None else error(403, f"CSRF check failed: {reason}")
