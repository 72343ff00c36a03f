"""``RunOwnerMiddleware``: runs published while a request is handled belong to its user.

Add it after Django's ``AuthenticationMiddleware``::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "tasktrail.middleware.RunOwnerMiddleware", ...]

The user is read when a run is published, not when the request arrives, so a user DRF
authenticates inside the view (Token, Basic, JWT) is the owner too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from .ownership import handling


class RunOwnerMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        with handling(request):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        with handling(request):
            response: Awaitable[HttpResponseBase] = self.get_response(request)
            return await response
