"""The default mode: one run of every scenario, shown live in the terminal."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

from .client import FINISHED, ApiError, Client
from .scenarios import SAMPLE_CSV

STYLE = {"SUCCESSFUL": "green", "FAILED": "red", "RETRYING": "yellow", "RUNNING": "cyan"}


@dataclass
class Tracked:
    label: str
    page: str
    status_url: str
    run: dict[str, Any] = field(default_factory=dict)


def _first_todo(client: Client) -> int:
    return int(client.get("/api/todos/").json()["results"][0]["id"])


def submit_all(client: Client) -> list[Tracked]:
    """One run of every scenario, through the same JSON API the pages use."""
    csv_file = {"file": ("products.csv", SAMPLE_CSV.read_bytes(), "text/csv")}
    report = {"start_date": "2000-01-01", "end_date": "2100-01-01", "format": "xlsx"}
    document = {
        "title": "Quarterly letter",
        "body": "Sales grew. Stock is fine.",
        "flaky_attempts": 2,
    }
    crawl = {"url": client.base_url + "/", "max_pages": 15, "delay": 0.3}
    submissions: list[tuple[str, str, Callable[[], httpx.Response]]] = [
        ("Sales report (XLSX)", "/reports/", lambda: client.post("/api/reports/", report)),
        ("Document, flaky service", "/documents/", lambda: client.post(
            "/api/documents/", document)),
        ("Resource crawl", "/resources/", lambda: client.post("/api/resources/", crawl)),
        ("Payment webhook x10", "/payments/", lambda: client.post(
            "/api/payments/simulate/", {"amount": "49.90", "deliveries": 10})),
        ("E-mail reminder", "/reminders/", lambda: client.post(
            f"/api/todos/{_first_todo(client)}/remind/")),
        ("Low-stock alert (beat)", "/reminders/", lambda: client.post(
            "/api/schedules/send-low-stock-alerts/run/")),
        ("Import chain", "/imports/", lambda: client.post("/api/imports/", files=csv_file)),
        ("Chunked batch (1,000)", "/batches/", lambda: client.post(
            "/api/batches/", {"size": 1000, "chunk_size": 100})),
    ]  # fmt: skip
    tracked = []
    for label, page, send in submissions:
        body = client.accepted(send())
        tracked.append(Tracked(label, page, body["status_url"]))
    return tracked


def _table(tracked: list[Tracked]) -> Table:
    table = Table(expand=True)
    table.add_column("Scenario", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Progress", ratio=2)
    table.add_column("%", justify="right", no_wrap=True)
    table.add_column("Latest", ratio=3, overflow="ellipsis", no_wrap=True)
    for item in tracked:
        run = item.run
        status = run.get("status", "READY")
        percent = (run.get("progress") or {}).get("percent")
        if status == "SUCCESSFUL":
            percent = 100
        message = (run.get("error") or {}).get("message") or (run.get("progress") or {}).get(
            "message", ""
        )
        if status == "RETRYING":
            message = f"attempt {run.get('attempts')} failed: {message}"
        table.add_row(
            item.label,
            f"[{STYLE.get(status, 'white')}]{status}[/]",
            ProgressBar(total=100, completed=percent or 0),
            "" if percent is None else f"{percent:.0f}",
            message,
        )
    return table


def show(client: Client, tracked: list[Tracked], footer: Panel, console: Console) -> None:
    """Refresh the table until every run ends, then keep showing it until Ctrl-C."""
    with Live(console=console, refresh_per_second=8) as live:
        while True:
            for item in tracked:
                if item.run.get("status") not in FINISHED:
                    with contextlib.suppress(ApiError):
                        item.run = client.run(item.status_url)
            live.update(Group(_table(tracked), footer))
            time.sleep(0.3)
