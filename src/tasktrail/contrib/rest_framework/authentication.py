"""The run endpoints' authentication through DRF's authenticator classes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.module_loading import import_string
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

from ...http import error


@lru_cache(maxsize=8)
def _classes(paths: tuple[str, ...]) -> tuple[type[Any], ...]:
    return tuple(import_string(path) for path in paths)


def authenticate(request: HttpRequest, paths: list[str]) -> Any:
    """The user the first authenticator recognises (DRF's order and rules), anonymous
    when none does, or a JSON 401/403 response. DRF's ``SessionAuthentication``
    enforces CSRF for a session credential on unsafe methods; the others need none."""
    authenticators = [cls() for cls in _classes(tuple(paths))]
    # The project's parsers, as an APIView has: the session's CSRF check reads the form.
    parsers = [cls() for cls in api_settings.DEFAULT_PARSER_CLASSES]
    wrapped = Request(request, parsers=parsers, authenticators=authenticators)
    try:
        for authenticator in authenticators:
            found = authenticator.authenticate(wrapped)
            if found is not None:
                user = found[0]
                request.user = user  # as DRF does: the ownership middleware reads it
                return user
    except exceptions.AuthenticationFailed as exc:
        response = error(401, str(exc.detail))
        # DRF's rule: the first authenticator's header, if it has one.
        header = authenticators[0].authenticate_header(wrapped)
        if header:
            response["WWW-Authenticate"] = header
        return response
    except exceptions.PermissionDenied as exc:  # SessionAuthentication's CSRF check
        return error(403, str(exc.detail))
    except exceptions.APIException as exc:  # a body the CSRF check could not parse
        return error(int(exc.status_code), str(exc.detail))
    return AnonymousUser()
