"""A real uvicorn serving tests/urls_ops.py (the dashboard under /ops/) and a headless
Chromium tab logged in as a new superuser: what the dashboard's browser tests share."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import ROOT, _child_env, _stop


@contextlib.contextmanager
def ops_server(port: int, log: Path, **env: str) -> Iterator[str]:
    """uvicorn on ``port`` (each test file has its own), from when it accepts connections;
    ``env`` adds to its environment (another ``DJANGO_SETTINGS_MODULE``, say)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "tests.urls_ops:asgi",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env={**_child_env(), **env}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"uvicorn did not start; see {log}") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(process)


@contextlib.contextmanager
def staff_tab(server: str, *, height: int = 800, timeout_ms: int = 20_000) -> Iterator[Any]:
    """A Chromium tab with a superuser's session cookie for ``server``."""
    from playwright.sync_api import sync_playwright

    boss = User.objects.create_superuser(f"boss-{uuid.uuid4().hex[:6]}", "", "pw")
    client = Client()
    client.force_login(boss)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop in this thread
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )  # fmt: skip
            context = chromium.new_context(viewport={"width": 1280, "height": height})
            cookie = client.cookies["sessionid"].value
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": server}])
            tab = context.new_page()
            tab.set_default_timeout(timeout_ms)
            yield tab
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
