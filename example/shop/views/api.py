"""Helpers shared by the JSON views: JSON errors, method and login guards, input."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse

View = Callable[..., HttpResponse]


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def api(*methods: str, staff: bool = False) -> Callable[[View], View]:
    """JSON view guard: 405 for other methods, 401 when logged out (never a redirect)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"Use {', '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            if not request.user.is_authenticated:
                return error(401, "Log in first (POST /accounts/login/).")
            if staff and not request.user.is_staff:
                return error(403, "Staff only.")
            return view(request, *args, **kwargs)

        return guarded

    return decorate


def data(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The request's input: a JSON object, or form fields (the pages post forms)."""
    if request.content_type == "application/json":
        try:
            value = json.loads(request.body or b"{}")
        except (UnicodeDecodeError, ValueError):
            return error(400, "The body is not valid JSON.")
        if not isinstance(value, dict):
            return error(400, "The body must be a JSON object.")
        return value
    return request.POST.dict()


def invalid(form: forms.Form) -> JsonResponse:
    return error(400, "Invalid input.", fields=form.errors.get_json_data())


def validated(form_class: type[forms.Form], request: HttpRequest) -> forms.Form | JsonResponse:
    values = data(request)
    if isinstance(values, JsonResponse):
        return values
    form = form_class(values, request.FILES or None)
    return form if form.is_valid() else invalid(form)
