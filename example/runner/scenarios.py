"""The smoke: every scenario driven through the HTTP API and checked to end as it should.

Each check is a function that submits, waits and asserts; it returns a one-line
detail or raises :class:`Failure`. They run concurrently, like real users.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .client import Client, Event

SECRET = os.environ.get("EXAMPLE_WEBHOOK_SECRET", "whsec-example-not-secret")
SAMPLE_CSV = Path(__file__).resolve().parent.parent / "shop" / "data" / "products.csv"


class Failure(AssertionError):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise Failure(message)


@dataclass(frozen=True)
class Context:
    base_url: str
    data_dir: Path

    def client(self, user: str = "demo") -> Client:
        client = Client(self.base_url)
        client.login(user, user)
        return client


@dataclass
class Outcome:
    name: str
    expected: str
    ok: bool
    detail: str
    seconds: float


def _started(
    client: Client, path: str, body: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return client.accepted(client.post(path, body, **kw))


def _feed(client: Client, events_url: str) -> list[Event]:
    """Every event of a finished run, from the start (the stream closes at the end)."""
    return list(client.events(events_url, last_event_id="0-0"))


# --- reports -----------------------------------------------------------------------


def _report(ctx: Context, fmt: str) -> str:
    client = ctx.client()
    body = _started(
        client,
        "/api/reports/",
        {"start_date": "2000-01-01", "end_date": "2100-01-01", "format": fmt},
    )
    expect(body["status_url"] and body["events_url"], "202 lacks status_url/events_url")
    run = client.wait(body["status_url"])
    expect(run["status"] == "SUCCESSFUL", f"run ended {run['status']}: {run.get('error')}")
    file_url = run["result"]["file_url"]
    download = client.get(file_url)
    expect(download.status_code == 200, f"owner download: {download.status_code}")
    if fmt == "csv":
        lines = download.text.splitlines()
        expect(lines[0] == "date,sku,product,quantity,amount", f"CSV header {lines[0]!r}")
        rows = len(lines) - 1
    else:
        from openpyxl import load_workbook

        sheet = load_workbook(io.BytesIO(download.content), read_only=True)["Sales"]
        rows = sum(1 for _ in sheet.iter_rows()) - 2  # header and total
    expect(
        rows == run["result"]["rows"] > 0,
        f"{rows} rows in the file, result says {run['result']['rows']}",
    )
    other = ctx.client("other").get(file_url)
    expect(other.status_code == 404, f"another user's download: {other.status_code}")
    anonymous = httpx.get(ctx.base_url + file_url, follow_redirects=False)
    expect(anonymous.status_code == 302, f"anonymous download: {anonymous.status_code}")
    return f"{rows} rows; owner 200, other user 404"


def report_csv(ctx: Context) -> str:
    return _report(ctx, "csv")


def report_xlsx(ctx: Context) -> str:
    return _report(ctx, "xlsx")


# --- documents -----------------------------------------------------------------------


def _document(client: Client, flaky: int, **extra: Any) -> dict[str, Any]:
    return _started(
        client,
        "/api/documents/",
        {
            "title": f"Smoke doc (flaky {flaky})",
            "body": "One. Two three four.",
            "flaky_attempts": flaky,
            **extra,
        },
    )


def document_staged(ctx: Context) -> str:
    client = ctx.client()
    body = _document(client, 0)
    run = client.wait(body["status_url"])
    expect(run["status"] == "SUCCESSFUL", f"run ended {run['status']}")
    percents = [
        e.data.get("percent") for e in _feed(client, body["events_url"]) if e.kind == "progress"
    ]
    expect(percents == [25, 50, 75, 100], f"progress events {percents}")
    return "progress 25/50/75/100"


def document_retried(ctx: Context) -> str:
    client = ctx.client()
    body = _document(client, 2)
    run = client.wait(body["status_url"])
    expect(run["status"] == "SUCCESSFUL", f"run ended {run['status']}")
    expect(run["attempts"] == 3, f"{run['attempts']} attempts, expected 3")
    states = [e.data["status"] for e in _feed(client, body["events_url"]) if e.kind == "state"]
    expect(states.count("RETRYING") >= 2, f"states {states}")
    return "2 retries with backoff, then SUCCESSFUL"


def document_failed(ctx: Context) -> str:
    client = ctx.client()
    body = _document(client, 4)
    run = client.wait(body["status_url"], timeout=90)
    expect(run["status"] == "FAILED", f"run ended {run['status']}")
    expect(run["attempts"] == 4, f"{run['attempts']} attempts, expected 4")
    expect("ExtractionUnavailable" in run["error"]["type"], f"error {run['error']}")
    document = client.get(f"/api/documents/{body['document']['id']}/").json()
    expect(document["status"] == "failed" and document["error_message"], f"document {document}")
    return "FAILED after 4 attempts; document marked failed"


def document_missing(ctx: Context) -> str:
    client = ctx.client()
    body = _document(client, 0, countdown=1.5)
    deleted = client.http.delete(f"/api/documents/{body['document']['id']}/", headers=client.csrf)
    expect(deleted.status_code == 204, f"delete: {deleted.status_code}")
    run = client.wait(body["status_url"])
    expect(run["status"] == "FAILED", f"run ended {run['status']}")
    expect(run["attempts"] == 1, f"{run['attempts']} attempts: it was retried")
    expect(run["error"]["type"].endswith("DocumentMissing"), f"error {run['error']}")
    return "FAILED at once, 1 attempt"


# --- crawl -----------------------------------------------------------------------------


def crawl(ctx: Context) -> str:
    client = ctx.client()
    body = _started(
        client, "/api/resources/", {"url": ctx.base_url + "/", "max_pages": 15, "delay": 0.05}
    )
    resource = body["resource"]
    expect(resource["channel"].startswith("crawl:"), f"channel {resource['channel']}")
    run_id = body["id"]
    events = list(
        client.events(
            resource["subject_events_url"],
            until=lambda e: (
                e.kind == "state"
                and e.data.get("run") == run_id
                and e.data.get("status") in ("SUCCESSFUL", "FAILED")
            ),
            timeout=60,
        )
    )
    expect(events and events[-1].data["status"] == "SUCCESSFUL", "the crawl did not succeed")
    levels = {e.data["level"] for e in events if e.kind == "feed" and e.data.get("run") == run_id}
    expect({"info", "warning", "error", "success"} <= levels, f"feed levels {sorted(levels)}")
    first = next(e for e in events if e.data.get("run") == run_id)
    expect(first.kind == "state", f"first event of the run is {first.kind}")
    return f"feed on {resource['channel'][:14]}...: {', '.join(sorted(levels))}"


def drf_crawl(ctx: Context) -> str:
    """Seed 000 as written: a DRF viewset's perform_create with apply_async(task_id=uuid)."""
    client = Client(ctx.base_url)
    client.token_login("demo", "demo")
    created = client.post(
        "/api/v2/resources/", {"url": ctx.base_url + "/", "max_pages": 5, "delay": 0.05}
    )
    expect(created.status_code == 201, f"create: {created.status_code} {created.text[:200]}")
    resource = created.json()
    run = client.wait(resource["status_url"])  # tasktrail's URL, with the Token only
    expect(run["id"] == resource["uuid"], f"run id {run['id']} is not the uuid")
    expect(run["status"] == "SUCCESSFUL", f"run ended {run['status']}: {run.get('error')}")
    expect(run["subject"] == f"crawl:{resource['uuid']}", f"subject {run['subject']}")
    listed = client.get(f"/api/v2/resources/{resource['uuid']}/runs/")
    expect(listed.status_code == 200, f"runs/: {listed.status_code} {listed.text[:200]}")
    ids = [r["id"] for r in listed.json()]
    expect(ids == [run["id"]], f"runs/ lists {ids}")
    other = Client(ctx.base_url)
    other.token_login("other", "other")
    denied = other.get(resource["status_url"]).status_code
    expect(denied == 404, f"another user's token reads the run: {denied}")
    again = client.accepted(client.post(f"/api/v2/resources/{resource['uuid']}/process/"))
    expect(client.wait(again["status_url"])["status"] == "SUCCESSFUL", "crawl again failed")
    return "201, run id = uuid; Token owner 200, other 404; process/ 202"


# --- payment webhook ---------------------------------------------------------------------


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    from tasktrail.webhooks import sign

    stamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": stamp,
        "X-Signature": sign(secret, stamp.encode() + b"." + body),
    }


def _payment(reference: str) -> bytes:
    return json.dumps(
        {"event": "charge.success", "reference": reference, "amount": "25.00", "customer": "demo"}
    ).encode()


def webhook_rejected(ctx: Context) -> str:
    reference = f"SMOKE-BAD-{os.urandom(4).hex()}"
    body = _payment(reference)
    url = ctx.base_url + "/webhooks/payments/"
    forged = httpx.post(url, content=body, headers=_signed(body, "wrong-secret"))
    expect(
        forged.status_code == 400 and forged.json()["code"] == "bad_signature",
        f"forged: {forged.status_code} {forged.text[:100]}",
    )
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    expect(unsigned.status_code == 401, f"unsigned: {unsigned.status_code}")
    stale = _signed(body)
    stale["X-Signature-Timestamp"] = str(int(time.time()) - 3600)
    from tasktrail.webhooks import sign

    stale["X-Signature"] = sign(SECRET, stale["X-Signature-Timestamp"].encode() + b"." + body)
    replay = httpx.post(url, content=body, headers=stale)
    expect(replay.status_code == 400, f"stale timestamp: {replay.status_code}")
    time.sleep(1.5)
    client = ctx.client()
    expect(client.get(f"/api/payments/{reference}/").status_code == 404, "a payment was recorded")
    from tasktrail.enqueueing import run_id_for_key

    key = f"webhook:paystack:example.shop.tasks.payments.process_payment_webhook:{reference}"
    run = client.get(f"/tasks/{run_id_for_key(key)}/")  # the demo user is staff: sees every run
    expect(run.status_code == 404, f"a run was enqueued for a rejected delivery: {run.status_code}")
    return "forged 400, unsigned 401, stale 400; nothing enqueued"


def webhook_duplicates(ctx: Context) -> str:
    reference = f"SMOKE-{os.urandom(4).hex()}"
    body = _payment(reference)
    headers = _signed(body)
    url = ctx.base_url + "/webhooks/payments/"
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(url, content=body, headers=headers, timeout=15), range(10)
            )
        )
    codes = [a.status_code for a in answers]
    expect(codes == [202] * 10, f"answers {codes}")
    ids = {a.json()["id"] for a in answers}
    expect(len(ids) == 1, f"{len(ids)} distinct runs")
    client = ctx.client()
    run = client.wait(f"/tasks/{ids.pop()}/")
    expect(run["status"] == "SUCCESSFUL", f"run ended {run['status']}")
    late = httpx.post(url, content=body, headers=headers)
    expect(
        late.status_code == 202 and late.json()["id"] == run["id"],
        "a late redelivery made a new run",
    )
    time.sleep(1.0)
    payment = client.get(f"/api/payments/{reference}/").json()
    expect(payment["times_processed"] == 1, f"processed {payment['times_processed']} times")
    return "10 concurrent + 1 late delivery: 1 run, processed once"


# --- reminders and schedules -------------------------------------------------------------


def reminder(ctx: Context) -> str:
    client = ctx.client()
    todo = client.get("/api/todos/").json()["results"][0]
    body = _started(client, f"/api/todos/{todo['id']}/remind/")
    run = client.wait(body["status_url"])
    expect(run["status"] == "SUCCESSFUL", f"run ended {run['status']}")
    log = (ctx.data_dir / "worker.log").read_text(errors="replace")
    expect(f"Subject: Reminder: {todo['title']}" in log, "no e-mail in the worker's console output")
    return "e-mail printed by the console backend"


def schedules(ctx: Context) -> str:
    client = ctx.client()
    cleanup = client.wait(_started(client, "/api/schedules/cleanup-old-todos/run/")["status_url"])
    expect(cleanup["status"] == "SUCCESSFUL", f"cleanup ended {cleanup['status']}")
    alert = client.wait(_started(client, "/api/schedules/send-low-stock-alerts/run/")["status_url"])
    expect(
        alert["status"] == "SUCCESSFUL" and alert["result"]["products"] > 0,
        f"alert {alert.get('result')}",
    )
    task = "example.shop.tasks.maintenance.send_low_stock_alert"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = client.get("/tasks/", params={"task": task, "status": "SUCCESSFUL"}).json()[
            "results"
        ]
        if len(runs) >= 2:
            break
        time.sleep(0.5)
    expect(len(runs) >= 2, "beat did not run the low-stock alert")
    return f"cleanup deleted {cleanup['result']}; beat ran the alert"


# --- import chain and chunked batch -------------------------------------------------------


def _subject_runs(client: Client, subject: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        runs = client.get("/tasks/", params={"subject": subject, "limit": 50}).json()["results"]
        if len(runs) >= count and all(r["status"] in ("SUCCESSFUL", "FAILED") for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise Failure(f"{subject}: {[(r['task'], r['status']) for r in runs]}")
        time.sleep(0.3)


def import_chain(ctx: Context) -> str:
    client = ctx.client()
    with SAMPLE_CSV.open("rb") as handle:
        body = _started(
            client, "/api/imports/", files={"file": ("products.csv", handle, "text/csv")}
        )
    run = client.wait(body["status_url"])
    expect(run["status"] == "SUCCESSFUL", f"import ended {run['status']}: {run.get('error')}")
    expect(
        run["result"]["imported"] == 8 and run["result"]["rejected"] == 2, f"result {run['result']}"
    )
    runs = _subject_runs(client, body["import_job"]["subject"], 2)
    notify = [r for r in runs if r["task"].endswith("send_notification")]
    expect(len(notify) == 1 and notify[0]["status"] == "SUCCESSFUL", f"runs {runs}")
    expect(notify[0]["parent_id"] == run["id"], "send_notification is not chained to the import")
    return "8 imported, 2 rejected; then notified"


def batch(ctx: Context) -> str:
    client = ctx.client()
    body = _started(client, "/api/batches/", {"size": 1000, "chunk_size": 100})
    run_ids, group_id = body["batch"]["run_ids"], body["batch"]["group_id"]
    expect(len(run_ids) == 10 and group_id, f"group {group_id}: {len(run_ids)} runs")
    # As the page does: follow batch:<uuid> from its start, count finished members.
    statuses = dict.fromkeys(run_ids, "READY")
    percents: list[float] = []

    def all_done(event: Event) -> bool:
        if event.kind == "state" and event.data.get("run") in statuses and event.data.get("status"):
            statuses[event.data["run"]] = event.data["status"]
            done = sum(1 for s in statuses.values() if s in ("SUCCESSFUL", "FAILED", "CANCELLED"))
            percents.append(100 * done / len(statuses))
        return all(s in ("SUCCESSFUL", "FAILED", "CANCELLED") for s in statuses.values())

    events = list(
        client.events(body["events_url"], last_event_id="0-0", until=all_done, timeout=90)
    )
    expect(set(statuses.values()) == {"SUCCESSFUL"}, f"chunks {sorted(statuses.values())}")
    expect(percents == sorted(percents) and percents[-1] == 100, f"overall progress {percents}")
    counted = sum(
        e.data["result"]["products"]
        for e in events
        if e.kind == "result" and e.data.get("run") in statuses
    )
    status = client.wait(body["status_url"])
    expect(
        status["status"] == "SUCCESSFUL", f"batch ended {status['status']}: {status.get('error')}"
    )
    expect(
        status["processed"] == 1000
        and status["result"]["products"] == 1000
        and status["result"]["chunks"] == 10
        and status["progress"]["percent"] == 100,
        f"batch {status}",
    )
    chunks = [
        r
        for r in _subject_runs(client, body["batch"]["subject"], 10)
        if r["task"].endswith("revalue_chunk")
    ]
    expect(
        len(chunks) == 10 and {r["group_id"] for r in chunks} == {group_id},
        f"{len(chunks)} chunks in { ({r['group_id'] for r in chunks}) }",
    )
    return f"1,000 ids in 10 chunks of one group ({counted} by results); 10 steps to 100%"


# --- access and bad input ----------------------------------------------------------------


def dashboard(ctx: Context) -> str:
    """The staff dashboard and /metrics are mounted; others are kept out."""
    staff = ctx.client()
    for page in ("/ops/", "/ops/runs/", "/ops/failures/", "/ops/workers/", "/ops/queues/"):
        answer = staff.get(page)
        expect(answer.status_code == 200, f"staff {page}: {answer.status_code}")
    expect("online" in staff.get("/ops/workers/").text, "no worker online on /ops/workers/")
    outsider = ctx.client("other").get("/ops/").status_code
    expect(outsider in (302, 403, 404), f"a non-staff user on /ops/: {outsider}")
    metrics = staff.get("/metrics")
    expect(metrics.status_code == 200, f"staff /metrics: {metrics.status_code}")
    expect("tasktrail_runs" in metrics.text, "no tasktrail_ families in /metrics")
    anonymous = httpx.get(ctx.base_url + "/metrics").status_code
    expect(anonymous == 401, f"anonymous /metrics: {anonymous}")
    return f"5 screens 200 for staff, non-staff {outsider}, /metrics staff 200 / anonymous 401"


def access_and_input(ctx: Context) -> str:
    client = ctx.client()
    body = _started(
        client,
        "/api/reports/",
        {"start_date": "2020-01-01", "end_date": "2020-01-02", "format": "csv"},
    )
    other = ctx.client("other")
    expect(other.get(body["status_url"]).status_code == 404, "another user sees the run")
    expect(other.get(body["events_url"]).status_code == 404, "another user sees the events")
    expect(httpx.get(body["status_url"]).status_code == 404, "anonymous sees the run")
    bad = client.post(
        "/api/reports/", {"start_date": "2020-02-01", "end_date": "2020-01-01", "format": "pdf"}
    )
    expect(bad.status_code == 400 and "fields" in bad.json(), f"bad input: {bad.status_code}")
    nocsrf = client.http.post("/api/reports/", json={})
    expect(
        nocsrf.status_code == 403 and "CSRF" in nocsrf.json()["error"],
        f"no CSRF: {nocsrf.status_code}",
    )
    malformed = client.get("/tasks/" + "x" * 256 + "/")  # any shorter id is Celery's to take
    expect(malformed.status_code == 400, f"malformed id: {malformed.status_code}")
    logged_out = httpx.post(ctx.base_url + "/api/batches/", json={})
    expect(logged_out.status_code in (401, 403), f"logged out: {logged_out.status_code}")
    client.wait(body["status_url"])
    return "404 for others, 400 bad input, 403 without CSRF"


CHECKS: list[tuple[str, str, Callable[[Context], str]]] = [
    ("report (CSV)", "SUCCESSFUL, owner-only file", report_csv),
    ("report (XLSX)", "SUCCESSFUL, owner-only file", report_xlsx),
    ("document", "SUCCESSFUL, 25/50/75/100", document_staged),
    ("document, flaky", "SUCCESSFUL after retries", document_retried),
    ("document, broken", "FAILED after 3 retries", document_failed),
    ("document, deleted", "FAILED at once", document_missing),
    ("crawl", "live feed on crawl:<uuid>", crawl),
    ("webhook, forged", "400/401, nothing enqueued", webhook_rejected),
    ("webhook, 10 at once", "one run, processed once", webhook_duplicates),
    ("reminder e-mail", "SUCCESSFUL, e-mail sent", reminder),
    ("beat schedules", "cleanup + low-stock alert", schedules),
    ("import chain", "import then notification", import_chain),
    ("chunked batch", "1,000 ids, 10 chunks", batch),
    ("DRF viewset crawl", "apply_async(task_id=uuid), Token auth", drf_crawl),
    ("dashboard, metrics", "staff only, mounted by command 1", dashboard),
    ("access, bad input", "404/400/403, never 500", access_and_input),
]


def run_checks(ctx: Context, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    def one(item: tuple[str, str, Callable[[Context], str]]) -> Outcome:
        name, expected, check = item
        started = time.monotonic()
        try:
            detail, ok = check(ctx), True
        except Exception as exc:  # a failed check is a row in the table, not a crash
            detail, ok = f"{type(exc).__name__}: {exc}", False
        outcome = Outcome(name, expected, ok, detail, time.monotonic() - started)
        if on_done is not None:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        return list(pool.map(one, CHECKS))
