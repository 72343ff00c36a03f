"""The 202 of a just-enqueued run as DRF's ``Response``."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response


def accepted_response(body: dict[str, Any], location: str) -> Response:
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})
