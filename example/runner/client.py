"""A small HTTP client for the example's API, as a script or a SPA would use it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

FINISHED = {"SUCCESSFUL", "FAILED", "CANCELLED"}


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict[str, Any]


class ApiError(RuntimeError):
    pass


class Client:
    """Session login, CSRF header, JSON in and out, runs followed to their end."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=15.0, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def login(self, username: str, password: str) -> None:
        self.http.get("/accounts/login/")
        response = self.http.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.http.cookies.get("csrftoken", ""),
            },
        )
        if response.status_code != 302:
            raise ApiError(f"login as {username} failed: {response.status_code}")

    def token_login(self, username: str, password: str) -> None:
        """DRF's Token authentication instead of a session: no cookie, no CSRF token."""
        response = self.http.post(
            "/api/v2/token/", data={"username": username, "password": password}
        )
        if response.status_code != 200:
            raise ApiError(f"token for {username} failed: {response.status_code}")
        self.http.headers["Authorization"] = f"Token {response.json()['token']}"

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        if "files" in kwargs or "data" in kwargs:
            return self.http.post(path, headers=self.csrf, **kwargs)
        return self.http.post(path, json=body or {}, headers=self.csrf, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def accepted(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 202:
            raise ApiError(f"expected 202, got {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def run(self, status_url: str) -> dict[str, Any]:
        response = self.http.get(status_url)
        if response.status_code != 200:
            raise ApiError(f"{status_url}: {response.status_code} {response.text[:200]}")
        body: dict[str, Any] = response.json()
        return body

    def wait(self, status_url: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the run is finished and the status no longer changes."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(status_url)
            if run["status"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise ApiError(f"run {run['id']} still {run['status']} after {timeout:.0f} s")
            time.sleep(0.25)

    def events(
        self,
        events_url: str,
        *,
        last_event_id: str | None = None,
        until: Any = None,
        timeout: float = 30.0,
    ) -> Iterator[Event]:
        """Parse a Server-Sent Events stream; stop when it closes or ``until(event)``."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        deadline = time.monotonic() + timeout
        with self.http.stream("GET", events_url, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                raise ApiError(f"{events_url}: {response.status_code}")
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise ApiError(f"{events_url}: no end within {timeout:.0f} s")
                if line == "":
                    if "data" in fields:
                        event = Event(
                            fields.get("id", ""),
                            fields.get("event", "message"),
                            json.loads(fields["data"]),
                        )
                        yield event
                        if until is not None and until(event):
                            return
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
