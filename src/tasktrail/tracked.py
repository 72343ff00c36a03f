"""Which Celery tasks tasktrail tracks (``TASKTRAIL['EXCLUDE_TASKS']``)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache

from .conf import settings


@lru_cache(maxsize=256)
def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def is_tracked(task_name: str) -> bool:
    return not _excluded(task_name, tuple(settings.EXCLUDE_TASKS))
