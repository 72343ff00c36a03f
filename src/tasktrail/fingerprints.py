"""Failure fingerprints: which failed runs are "the same failure".

A fingerprint is a digest of the task, the exception type and the innermost frame of
the project's own code in the stored traceback (the last frame outside the standard
library, installed packages, Celery, kombu, billiard and tasktrail; the innermost frame
when there is none). The message is left out: ids in messages would split one bug into
thousands of groups. The frame counts by file, function and source line, not by line
number, so a deploy that moves code around keeps its groups (Sentry does the same).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec

LENGTH = 16  # hex digits: 64 bits, no collision among the groups of one project

# '  File "/app/orders.py", line 12, in charge' (exception groups prefix '  | ').
_FRAME = re.compile(r'^[ |]*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$')
_BLOCK_START = "Traceback (most recent call last):"
_LIBRARIES = ("celery", "kombu", "billiard", "tasktrail")
_INSTALLED = ("site-packages", "dist-packages")
# Another interpreter's standard library (a worker's Python need not be this one's).
_STDLIB = re.compile(r"(^|/)lib(64)?/(python\d+(\.\d+)?|pypy[\d.]*)/")


@dataclass(frozen=True, kw_only=True)
class Frame:
    file: str  # relative to its sys.path entry when under one
    line: int
    function: str
    code: str  # the source line, '' when the traceback lacks it

    @property
    def label(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    digest: str
    task: str
    error_type: str
    frame: Frame | None


def fingerprint(task: str, error_type: str, traceback: str) -> Fingerprint:
    """The fingerprint of one failure, from what the run record stores."""
    frame = culprit(traceback)
    parts = [task, error_type]
    if frame is not None:
        parts += [frame.file, frame.function, frame.code or str(frame.line)]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()
    return Fingerprint(digest=digest[:LENGTH], task=task, error_type=error_type, frame=frame)


def digest(task: str, error_type: str, traceback: str) -> str:
    return fingerprint(task, error_type, traceback).digest


def culprit(traceback: str) -> Frame | None:
    """The innermost frame of the project's own code in the raised exception's traceback
    (the last block: chained causes come first), else the innermost frame at all."""
    frames = frames_of(traceback.rsplit(_BLOCK_START, 1)[-1])
    for frame, path in reversed(frames):
        if is_project(path):
            return frame
    return frames[-1][0] if frames else None


def frames_of(text: str) -> list[tuple[Frame, str]]:
    """Each frame of a formatted traceback, with its file's path as written."""
    found: list[tuple[Frame, str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _FRAME.match(line)
        if match is None:
            continue
        code = lines[index + 1].strip().lstrip("| ") if index + 1 < len(lines) else ""
        if code.startswith("File ") or set(code) <= set("^~ "):
            code = ""  # no source line (a frozen module, say), or only carets
        path = match["file"]
        frame = Frame(
            file=_relative(path), line=int(match["line"]), function=match["function"], code=code
        )
        found.append((frame, path))
    return found


def is_project(path: str) -> bool:
    """Whether a file is the project's own code, not Python's or a library's."""
    if path.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    parts = path.replace("\\", "/").split("/")
    if any(part in _INSTALLED for part in parts) or _STDLIB.search("/".join(parts)):
        return False
    return not any(path.startswith(root) for root in _library_roots())


@cache
def _library_roots() -> tuple[str, ...]:
    """The standard library's directories and those of the libraries named above."""
    roots = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib")}
    for name in _LIBRARIES:
        roots.update(_package_dirs(name))
    return tuple(os.path.join(root, "") for root in sorted(roots))


def _package_dirs(name: str) -> list[str]:
    module = sys.modules.get(name)
    if module is not None:  # kombu replaces its module: its __spec__ is None then
        return [os.path.dirname(str(module.__file__))] if getattr(module, "__file__", None) else []
    try:
        spec = find_spec(name)  # a top-level name: found without importing it
    except (ImportError, ValueError):
        return []
    return list(spec.submodule_search_locations or []) if spec is not None else []


def _relative(path: str) -> str:
    """A path without the directory it was imported from, so the same code deployed to
    another directory has the same fingerprint."""
    best = ""
    for entry in sys.path:
        root = os.path.join(os.path.abspath(entry or "."), "")
        if path.startswith(root) and len(root) > len(best):
            best = root
    return path[len(best) :] if best else path
