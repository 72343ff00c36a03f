"""Real receivers for the alert tests: an SMTP server (aiosmtpd) and an HTTP endpoint,
each counting what it was delivered. Ports come from the alerts helper's range."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.original_content))
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        with self.lock:
            return [" ".join(str(m["Subject"]).split()) for m in self.messages]  # unfolded


@contextlib.contextmanager
def smtp_server(port: int) -> Iterator[Mailbox]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Inbox:
    deliveries: list[Delivery] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)  # path -> answers of 500 to give
    delay: float = 0.0  # seconds each answer takes: keeps a delivery in flight a while
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path]


@contextlib.contextmanager
def http_receiver(port: int, delay: float = 0.0) -> Iterator[Inbox]:
    inbox = Inbox(delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(inbox.delay)
            with inbox.lock:
                if inbox.refuse.get(self.path, 0) > 0:
                    inbox.refuse[self.path] -= 1
                    status = 500
                else:
                    inbox.deliveries.append(Delivery(self.path, dict(self.headers), body))
                    status = 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(step)


def fresh_window(window: float, margin: float = 60.0) -> None:
    """Sleep past the next window boundary when fewer than ``margin`` seconds remain,
    so the events a test makes all fall into one throttle window."""
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.5)


def mail_to_smtp_server(settings: Any, port: int) -> None:
    """Django's mail (the e-mail channel's) to the local SMTP server on ``port``."""
    import django

    smtp = "django.core.mail.backends.smtp.EmailBackend"
    if django.VERSION >= (6, 1):  # EMAIL_* are deprecated there
        options = {"host": "127.0.0.1", "port": port, "timeout": 10}
        settings.MAILERS = {"default": {"BACKEND": smtp, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = smtp
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
