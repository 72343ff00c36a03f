"""Browser tests of the example's pages with Playwright and Debian's Chromium (headless).

Run with ``-m browser``. They start command 1 (``python -m example``) once, with a
private Valkey, and drive its pages through a small TCP proxy that can cut every
open connection, to prove that the stream resumes without losing a feed line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
    pytest.mark.timeout(180),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proxy:
    """A TCP proxy to the example's server whose open connections can be cut at once."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: set[socket.socket] = set()
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets |= {client, upstream}
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._close(s)

    def _close(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> int:
        """Close every open connection (the browser sees the network drop)."""
        with self.lock:
            open_now = list(self.sockets)
        for sock in open_now:
            self._close(sock)
        return len(open_now)

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Command 1, running; yields its base URL."""
    data = tmp_path_factory.mktemp("example")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["REDIS_URL"] = f"redis://127.0.0.1:{_free_port()}/0"
    log = data / "runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "example", "--port", str(port), "--data-dir", str(data / "d")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while b"Everything started" not in log.read_bytes():
            assert runner.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def _login(browser: Any, base_url: str) -> Any:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page


def _feed(page: Any) -> list[str]:
    lines: list[str] = page.eval_on_selector_all(
        "[data-tasktrail-feed] li",
        "items => items.map(li => li.dataset.level + ' ' + li.lastChild.textContent.trim())",
    )
    return lines


def _complete_feed(page: Any) -> list[str]:
    """The run's whole feed, read from its stream from the first event."""
    lines: list[str] = page.evaluate(
        """async url => {
            const text = await (await fetch(url + '?last_event_id=0-0')).text();
            return text.split('\\n\\n').filter(b => b.includes('event: feed')).map(b => {
                const d = JSON.parse(b.split('\\n').find(l => l.startsWith('data: ')).slice(6));
                return d.level + ' ' + d.message;
            });
        }""",
        page.evaluate("window.tasktrailFollower.url"),
    )
    return lines


def test_button_starts_a_run_and_the_bar_reaches_100(example: str, browser: Any) -> None:
    page = _login(browser, example)
    assert "Document processing" in page.content()
    page.goto(f"{example}/documents/")
    page.click("[data-start]")
    widget = page.locator("[data-run-widget]")
    page.wait_for_selector("[data-run-widget][data-tasktrail-ended=true]", timeout=30_000)
    assert widget.get_attribute("data-tasktrail-state") == "SUCCESSFUL"
    assert page.eval_on_selector("[data-tasktrail-bar]", "bar => bar.value") == 100
    assert page.inner_text("[data-tasktrail-percent]") == "100%"
    feed = _feed(page)
    assert feed[0].startswith("info Attempt 1: processing")
    assert feed[-1].startswith("success Processed")
    assert page.inner_text("[data-tasktrail-message]") == "Saved"
    assert '"words": 18' in page.inner_text("[data-tasktrail-result]")
    shots = ROOT / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "documents.png"), full_page=True)
    page.close()


def test_batch_page_counts_finished_chunks_to_100(example: str, browser: Any) -> None:
    page = _login(browser, example)
    page.goto(f"{example}/batches/")
    # Record every value the bar takes: overall progress only ever rises.
    page.evaluate(
        """() => {
            window.barValues = [];
            const bar = document.querySelector('[data-tasktrail-bar]');
            new MutationObserver(() => window.barValues.push(bar.value))
                .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
        }"""
    )
    page.click("[data-start]")
    page.wait_for_selector("[data-run-widget][data-tasktrail-ended=true]", timeout=60_000)
    assert page.get_attribute("[data-run-widget]", "data-tasktrail-state") == "SUCCESSFUL"
    assert page.inner_text("[data-tasktrail-percent]") == "100%"
    assert page.inner_text("[data-tasktrail-message]") == "10 of 10 done"
    values = page.evaluate("window.barValues")
    assert values == sorted(values) and values[-1] == 100, values
    assert all(v % 10 == 0 for v in values), f"a chunk's own progress moved the bar: {values}"
    assert page.locator("[data-tasktrail-runs] li[data-status=SUCCESSFUL]").count() == 10
    chunks = [line for line in _feed(page) if "revalued 100 products" in line]
    assert len(chunks) == 10 and all(line.startswith("success Chunk") for line in chunks)
    page.close()


def test_report_page_links_the_owner_only_download(example: str, browser: Any) -> None:
    page = _login(browser, example)
    page.goto(f"{example}/reports/")
    page.select_option("select[name=format]", "csv")
    page.click("[data-start]")
    page.wait_for_selector("[data-tasktrail-download]", timeout=30_000)
    with page.expect_download() as download:
        page.click("[data-tasktrail-download]")
    assert download.value.suggested_filename.endswith(".csv")
    page.close()


def test_stream_resumes_after_the_connection_drops(example: str, browser: Any) -> None:
    proxy = Proxy(int(example.rsplit(":", 1)[1]))
    try:
        base = f"http://127.0.0.1:{proxy.port}"
        page = _login(browser, base)
        page.goto(f"{base}/documents/")
        # Two failed attempts with backoff (1 s, 2 s): feed lines arrive over ~6 s.
        page.select_option("select[name=flaky_attempts]", "2")
        page.click("[data-start]")
        page.wait_for_function(
            "document.querySelectorAll('[data-tasktrail-feed] li').length >= 2", timeout=15_000
        )
        before = _feed(page)
        connections = proxy.connections
        assert proxy.cut() > 0
        page.wait_for_selector("[data-run-widget][data-tasktrail-ended=true]", timeout=45_000)
        assert proxy.connections > connections, "the browser did not reconnect"
        shown = _feed(page)
        complete = _complete_feed(page)
        assert shown[: len(before)] == before
        assert shown == complete, "a feed line was lost or repeated across the reconnect"
        assert len(shown) > len(before)
        assert page.get_attribute("[data-run-widget]", "data-tasktrail-state") == "SUCCESSFUL"
        page.close()
    finally:
        proxy.close()


def test_polling_fallback_still_shows_every_feed_line(example: str, browser: Any) -> None:
    # The stream is refused (503) while the run is going, so the page falls back to
    # polling, which carries no feed lines; once the run has ended the stream is let
    # through, and the client's last try must replay every line it missed.
    page = _login(browser, example)
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    answers: list[str] = []

    def refuse_while_running(route: Any) -> None:
        status_url = route.request.url.split("events/")[0]
        request = urllib.request.Request(
            status_url, headers={"Cookie": cookie, "Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            status = json.load(response)["status"]
        if status in ("SUCCESSFUL", "FAILED", "CANCELLED"):
            answers.append("through")
            route.continue_()
        else:
            answers.append("refused")
            route.fulfill(status=503, content_type="text/plain", body="stream refused by the test")

    page.route(re.compile(r"/tasks/[^/]+/events/"), refuse_while_running)
    page.goto(f"{example}/documents/")
    page.select_option("select[name=flaky_attempts]", "2")  # about 6 s of run
    page.click("[data-start]")
    page.wait_for_function(
        "window.tasktrailFollower && window.tasktrailFollower.mode === 'polling'"
    )
    page.wait_for_selector("[data-run-widget][data-tasktrail-ended=true]", timeout=45_000)
    page.unroute(re.compile(r"/tasks/[^/]+/events/"))
    assert answers[0] == "refused" and answers[-1] == "through", answers
    shown = _feed(page)
    complete = _complete_feed(page)
    assert len(complete) >= 3, complete
    assert shown == complete, "a feed line sent while polling never reached the page"
    assert page.get_attribute("[data-run-widget]", "data-tasktrail-state") == "SUCCESSFUL"
    page.close()
