"""The dashboard's CSS and JavaScript, served by the dashboard itself.

They live in ``tasktrail/static/tasktrail/dashboard/`` (so ``collectstatic`` finds
them too), but the pages load them through this view, so the dashboard works
whether or not the project serves static files.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

ASSETS = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "workflow.js": "text/javascript",
}


@lru_cache(maxsize=len(ASSETS))
def _read(name: str) -> tuple[bytes, str]:
    folder = resources.files("tasktrail").joinpath("static/tasktrail/dashboard")
    body = folder.joinpath(name).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


def version(name: str) -> str:
    return _read(name)[1]


@require_GET
def asset(request: HttpRequest, name: str) -> HttpResponse:
    if name not in ASSETS:
        raise Http404("No such asset.")
    body, digest = _read(name)
    response = HttpResponse(body, content_type=f"{ASSETS[name]}; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    response["ETag"] = f'"{digest}"'
    return response
