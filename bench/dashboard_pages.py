"""Server time of each dashboard page and of /metrics over 1,000,000 runs in PostgreSQL.

    uv run python bench/dashboard_pages.py              # fill (once) and measure
    uv run python bench/dashboard_pages.py --rows 200000 --refill
    uv run python bench/dashboard_pages.py --dry-run    # print the plan, touch nothing

Fills its own database (``tasktrail_dash_bench`` on 127.0.0.1:5432, user postgres)
with one INSERT ... SELECT over generate_series (runs spread over 30 days, or
``--days``, 92%
successful, 6% failed, 2% cancelled, a backlog of READY/RUNNING at the head),
then requests each page in-process with Django's test client as a superuser, and
prints the median server time of 5 requests (target < 100 ms) and, for each page,
the EXPLAIN ANALYZE of its slowest queries.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

TARGET_MS = 100.0
TASKS = [f"bench.tasks.job_{i:02d}" for i in range(20)]
QUEUES = ["default", "reports", "emails"]
# The first FAMILY runs share one root: the workflow timeline's family (a chord of 1,000).
FAMILY = 1000

FILL_SQL = """
INSERT INTO tasktrail_taskrun (
  id, task, status, queue, worker, attempts, progress_current, progress_total,
  progress_message, args, kwargs, result, error_type, error_message, error_traceback,
  enqueued_at, started_at, last_attempted_at, finished_at, team, subject, parent_id, root_id, group_id,
  cancelled_by, retry_of, version, owner_id, arguments_incomplete, error_reason, generation,
  flush_error, trace_id, span_id, fingerprint)
SELECT
  md5(g::text || 'run')::uuid::text,
  'bench.tasks.job_' || lpad((g %% 20)::text, 2, '0'),
  CASE WHEN g <= %(backlog)s THEN (CASE WHEN g %% 4 = 0 THEN 'RUNNING' ELSE 'READY' END)
       WHEN g %% 50 < 3 THEN 'FAILED' WHEN g %% 50 = 3 THEN 'CANCELLED' ELSE 'SUCCESSFUL' END,
  (ARRAY['default','reports','emails'])[1 + g %% 3],
  CASE WHEN g <= %(backlog)s AND g %% 4 = 0 THEN 'worker-1@bench' ELSE '' END,
  1, 10, 10, '',
  jsonb_build_array(g, 'order-' || g), jsonb_build_object('customer', 'c' || (g %% 5000)),
  CASE WHEN g %% 50 >= 4 THEN to_jsonb(g) END,
  CASE WHEN g %% 50 < 3 THEN 'builtins.ValueError' ELSE '' END,
  CASE WHEN g %% 50 < 3 THEN 'bad input ' || g ELSE '' END, '',
  now() - (g * %(span)s / %(rows)s),
  -- waits of 0.1 to 2 s and runtimes of 0.05 to 9.7 s, spread over the ranks
  now() - (g * %(span)s / %(rows)s) + ((1 + (g * 7) %% 20) * interval '100 ms'),
  now() - (g * %(span)s / %(rows)s) + ((1 + (g * 7) %% 20) * interval '100 ms'),
  CASE WHEN g > %(backlog)s THEN now() - (g * %(span)s / %(rows)s)
    + ((1 + (g * 7) %% 20) * interval '100 ms') + ((1 + (g * 13) %% 97) * interval '100 ms') END,
  '', '', '', md5((CASE WHEN g <= %(family)s THEN 0 ELSE g / 5 END)::text || 'root')::uuid::text,
  '', '', '', 1, NULL, false, '', 1,
  '', md5(g::text || 'trace'), left(md5(g::text || 'span'), 16),
  -- failure groups: seven fingerprints among the failed runs
  CASE WHEN g > %(backlog)s AND g %% 50 < 3 THEN left(md5('group' || (g %% 7)::text), 16)
       ELSE '' END
FROM generate_series(1, %(rows)s) AS g
"""


def configure(database: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "tasktrail",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": database,
                "HOST": "127.0.0.1",
                "PORT": "5432",
                "USER": "postgres",
            }
        },
        TASKTRAIL={"REDIS_URL": "redis://127.0.0.1:6379/9", "KEY_PREFIX": "tt-dash-bench"},
        CELERY_BROKER_URL="redis://127.0.0.1:6379/8",
    )
    django.setup()
    from celery import Celery

    app = Celery("dash-bench")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.task_default_queue = "default"
    app.set_current()


urlpatterns: list[Any] = []


def _urls() -> None:
    from django.urls import include, path

    from tasktrail.metrics import metrics_view

    urlpatterns[:] = [
        path("ops/", include("tasktrail.dashboard.urls")),
        path("metrics", metrics_view),
    ]


def ensure_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            db.execute(f'CREATE DATABASE "{name}"')


def fill(rows: int, refill: bool, days: int = 30) -> None:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname='tasktrail_taskrun'")
        estimate = int(cursor.fetchone()[0])
        if estimate >= rows * 0.95 and not refill:
            print(f"table already holds about {estimate:,} runs (use --refill to rebuild)")
            _ensure_family(cursor)
            return
        started = time.perf_counter()
        cursor.execute("TRUNCATE tasktrail_taskrun")
        cursor.execute(
            FILL_SQL,
            {
                "rows": rows,
                "backlog": min(2000, rows // 100),
                "span": timedelta(days=days),
                "family": FAMILY,
            },
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tasktrail_taskrun")
    print(f"filled {rows:,} runs in {time.perf_counter() - started:.1f}s")


def _family_root() -> str:
    return str(uuid.UUID(hashlib.md5(b"0root").hexdigest()))  # FILL_SQL's family root


def _ensure_family(cursor: Any) -> None:
    """A table filled before the timeline existed: give its first FAMILY runs one root."""
    ids = [
        str(uuid.UUID(hashlib.md5(f"{g}run".encode()).hexdigest())) for g in range(1, FAMILY + 1)
    ]
    cursor.execute(
        "UPDATE tasktrail_taskrun SET root_id = %s WHERE id = ANY(%s) AND root_id <> %s",
        [_family_root(), ids, _family_root()],
    )


def pages() -> list[tuple[str, str]]:
    from tasktrail.models import TaskRun

    sample = TaskRun.objects.filter(status="FAILED").order_by("-enqueued_at").first()
    run_id = sample.id if sample else "missing"
    fingerprint = sample.fingerprint if sample and sample.fingerprint else "0" * 16
    member = TaskRun.objects.filter(root_id=_family_root()).values_list("id", flat=True).first()
    return [
        ("overview", "/ops/"),
        ("runs", "/ops/runs/"),
        ("runs status=FAILED", "/ops/runs/?status=FAILED"),
        ("runs task=", f"/ops/runs/?task={TASKS[7]}"),
        ("runs queue= since=24h", "/ops/runs/?queue=emails&since=24h"),
        ("runs search (24h)", "/ops/runs/?search=c4242"),
        ("runs page 2", "/ops/runs/?cursor=NEXT"),
        ("run detail", f"/ops/runs/{run_id}/"),
        ("timeline (1,000 runs)", f"/ops/runs/{member}/timeline/"),
        ("timeline data (1,000 runs)", f"/ops/runs/{member}/timeline/data/"),
        ("failures", "/ops/failures/"),
        ("failure groups", "/ops/failures/groups/"),
        ("failure groups muted=1", "/ops/failures/groups/?muted=1"),
        ("failure group", f"/ops/failures/groups/{fingerprint}/"),
        ("bulk retry confirm", f"/ops/bulk/retry/?task={TASKS[1]}"),
        ("workers", "/ops/workers/"),
        ("queues", "/ops/queues/"),
        ("schedules", "/ops/schedules/"),
        ("/metrics", "/metrics"),
        ("latency", "/ops/latency/"),
        ("latency task=", f"/ops/latency/?task={TASKS[7]}"),
    ]


def measure(repeat: int, plans: int, only: list[str] | None = None) -> list[tuple[str, float]]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()  # so responses carry their template context

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", "pw"
    )
    client = Client()
    client.force_login(user)
    first = client.get("/ops/runs/")
    cursor = first.context["next_cursor"] if first.context else ""
    results = []
    for label, url in pages():
        if only and not any(word in label for word in only):
            continue
        url = url.replace("NEXT", cursor or "")
        client.get(url)  # warm caches
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        median = statistics.median(times)
        results.append((label, median))
        flag = "ok " if median < TARGET_MS else "SLOW"
        print(f"{flag} {median:7.1f} ms  {label:<24} {url}")
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        slowest = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:plans]
        for query in slowest:
            sql = query["sql"]
            if (
                not sql.startswith(("SELECT", "WITH"))
                or "django_session" in sql
                or "auth_user" in sql
            ):
                continue
            with connection.cursor() as db:
                db.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql)
                plan = [row[0] for row in db.fetchall()]
            print(f"      {float(query['time']) * 1000:.1f} ms: {sql[:160]}")
            for line in plan:
                print(f"        {line}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default="tasktrail_dash_bench")
    parser.add_argument("--refill", action="store_true", help="Rebuild the table.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--plans", type=int, default=3, help="Slowest queries explained per page.")
    parser.add_argument("--dry-run", action="store_true", help="Print the plan and exit.")
    parser.add_argument(
        "--days",
        type=int,
        default=30,
        help="Days the runs are spread over (--rows 100000 --days 3 has the per-day "
        "density of 1,000,000 runs over 30: the latency screen reads one day).",
    )
    parser.add_argument("--only", nargs="*", help="Measure the pages whose label has a word.")
    options = parser.parse_args()
    if options.dry_run:
        print(f"would fill {options.db} with {options.rows:,} runs, then time:")
        for label, url in [
            ("overview", "/ops/"), ("runs", "/ops/runs/"), ("run detail", "/ops/runs/<id>/"),
            ("timeline", "/ops/runs/<id>/timeline/"),
            ("timeline data", "/ops/runs/<id>/timeline/data/"),
            ("failures", "/ops/failures/"), ("failure groups", "/ops/failures/groups/"),
            ("failure group", "/ops/failures/groups/<fingerprint>/"), ("workers", "/ops/workers/"),
            ("queues", "/ops/queues/"), ("schedules", "/ops/schedules/"), ("metrics", "/metrics"),
            ("latency", "/ops/latency/"), ("latency task", "/ops/latency/?task=<name>"),
        ]:  # fmt: skip
            print(f"  {label:<12} {url}")
        return
    ensure_database(options.db)
    configure(options.db)
    _urls()
    fill(options.rows, options.refill, options.days)
    results = measure(options.repeat, options.plans, options.only)
    slow = [label for label, ms in results if ms >= TARGET_MS]
    print(f"\n{len(results) - len(slow)}/{len(results)} pages under {TARGET_MS:.0f} ms" + (
        f"; slow: {', '.join(slow)}" if slow else ""
    ))  # fmt: skip


if __name__ == "__main__":
    main()
