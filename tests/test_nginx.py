"""The documented production deployment, run: Debian's nginx in front of uvicorn.

The test fills in the templates under ``deploy/`` (the nginx site and the systemd
units' ``ExecStart`` lines, with their environment file) and runs exactly those: the
reference project under uvicorn, its Celery worker and beat, nginx with TLS and HTTP/2.
Chromium then opens one page that starts 20 runs and follows each with the browser's
own ``EventSource``: more than HTTP/1.1's six connections per origin allow at once, so
the test proves HTTP/2, that all 20 streams were open together, and that every event
Redis holds for each run reached the page.

Needs ``/usr/sbin/nginx`` (Debian's ``nginx-light``), ``/usr/bin/chromium``, ``openssl``
and Redis on 6379 (keys and queue under a random prefix).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.deployment import (
    DEPLOY,
    ROOT,
    Stack,
    answers_http,
    certificate,
    environment_file,
    fill,
    listening,
    nginx_main_conf,
    unit_command,
    with_upstreams,
)

# Redis and process behaviour the database and Django's version do not change: pass 1 only.
pytestmark = pytest.mark.once

NGINX = "/usr/sbin/nginx"
CHROMIUM = "/usr/bin/chromium"
SYSTEM_REDIS = "redis://127.0.0.1:6379/0"
# This test's own ports (the helpers' port plan gives it 27200-27299).
HTTP_PORT, TLS_PORT = 27200, 27201
WEB_PORTS = (27210, 27211)  # two web instances, restarted one at a time
RUNS = 20  # more than the six connections per origin of HTTP/1.1


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(SYSTEM_REDIS, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def _nginx_has_http2() -> bool:
    if not Path(NGINX).exists():
        return False
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True, check=False).stderr
    return "--with-http_v2_module" in built and "--with-http_ssl_module" in built


# The stack's tests: a browser, slow (the first CI pass only), and what they need here.
LIVE = [
    pytest.mark.browser,
    pytest.mark.once,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not _nginx_has_http2(), reason="needs Debian's nginx (nginx-light)"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI"),
    pytest.mark.skipif(not _redis_answers(), reason="needs Redis on 127.0.0.1:6379"),
]


def live(test: Callable[..., None]) -> Callable[..., None]:
    for mark in LIVE:
        test = mark(test)
    return test


def _web_ready(port: int) -> Callable[[], bool]:
    return lambda: answers_http(f"http://127.0.0.1:{port}/accounts/login/")


def _site() -> str:
    return (DEPLOY / "nginx" / "tasktrail.conf").read_text()


def _manage(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``manage.py`` of the reference project, started (several run side by side)."""
    return subprocess.Popen(
        [sys.executable, "example/manage.py", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _succeeded(command: subprocess.Popen[str]) -> None:
    output, _ = command.communicate(timeout=120)
    assert command.returncode == 0, output


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("nginx")
    suffix = uuid.uuid4().hex[:10]
    venv = Path(sys.executable).parent.parent
    static_root = tmp / "static"
    cert, key = certificate(tmp)
    values = {
        "USER": pwd.getpwuid(os.geteuid()).pw_name,
        "APP_DIR": str(ROOT),
        "VENV": str(venv),
        "ENV_FILE": str(tmp / "tasktrail.env"),
        "STATE_DIR": str(tmp),
        "SETTINGS_MODULE": "example.project.settings",
        "ASGI_APP": "example.project.asgi:application",
        "CELERY_APP": "example.project",
        "WEB_WORKERS": "2",
        "WORKER_CONCURRENCY": "4",
        "WORKER_STOP_TIMEOUT": "1800",
        "SERVER_NAME": "127.0.0.1",
        "HTTP_PORT": str(HTTP_PORT),
        "TLS_PORT": str(TLS_PORT),
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "STATIC_URL": "/static/",
        "STATIC_ROOT": str(static_root),
    }
    base_url = f"https://127.0.0.1:{TLS_PORT}"
    # The documented environment file, plus what the reference project reads.
    env_text = fill((DEPLOY / "systemd" / "tasktrail.env").read_text(), values) + "\n".join(
        [
            f"PYTHONPATH={ROOT}{os.pathsep}{ROOT / 'src'}",
            f"EXAMPLE_DATA_DIR={tmp / 'data'}",
            f"EXAMPLE_BASE_URL={base_url}",
            f"EXAMPLE_KEY_PREFIX=tasktrail-nginx-{suffix}",
            f"EXAMPLE_QUEUE=nginx-{suffix}",
            f"REDIS_URL={SYSTEM_REDIS}",
            "",
        ]
    )
    Path(values["ENV_FILE"]).write_text(env_text)
    # systemd starts services with a bare environment and the EnvironmentFile's values.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "LANG": "C.UTF-8"}
    env |= environment_file(env_text)
    stack = Stack(base_url, tmp, f"tasktrail-nginx-{suffix}")
    try:
        _succeeded(_manage(env, "migrate", "--noinput"))
        # The services start while the user and the static files are made.
        setup = _manage(env, "example_setup", "--user", "demo", "--password", "demo", "--no-data")
        # collectstatic fills this test's own folder (the project's STATIC_ROOT is under
        # its data directory): a settings module of two lines points it there.
        (tmp / "collect_settings.py").write_text(
            f"from example.project.settings import *  # noqa: F403\nSTATIC_ROOT = {str(static_root)!r}\n"
        )
        collect_env = env | {
            "PYTHONPATH": f"{tmp}{os.pathsep}{env['PYTHONPATH']}",
            "DJANGO_SETTINGS_MODULE": "collect_settings",
        }
        collect = _manage(collect_env, "collectstatic", "--noinput")

        systemd = DEPLOY / "systemd"
        for port in WEB_PORTS:
            web = unit_command(systemd / "tasktrail-web@.service", values, str(port))
            stack.start(f"web-{port}", web, env)
        stack.start("worker", unit_command(systemd / "tasktrail-worker@.service", values, f"nginx-{suffix}"), env)  # fmt: skip
        stack.start("beat", unit_command(systemd / "tasktrail-beat.service", values), env)
        site = tmp / "tasktrail.conf"
        upstreams = [f"127.0.0.1:{port}" for port in WEB_PORTS]
        site.write_text(fill(with_upstreams(_site(), upstreams), values))
        main_conf = tmp / "nginx.conf"
        main_conf.write_text(nginx_main_conf(tmp, site))
        nginx = [NGINX, "-p", str(tmp), "-c", str(main_conf), "-e", str(tmp / "nginx-error.log")]
        checked = subprocess.run([*nginx, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        stack.start("nginx", nginx, env)
        _succeeded(setup)
        _succeeded(collect)
        shutil.copy(
            Path(__file__).with_name("nginx_follow.html"), static_root / "nginx-follow.html"
        )

        for port in WEB_PORTS:
            stack.wait(f"web-{port}", _web_ready(port))
        stack.wait("worker", lambda: " ready." in stack.log("worker"), timeout=90)
        stack.wait("beat", lambda: "beat: Starting" in stack.log("beat"))
        stack.wait("nginx", lambda: listening(TLS_PORT))
        yield stack
    finally:
        stack.stop()
        client = redis.Redis.from_url(SYSTEM_REDIS)
        for name in client.scan_iter(f"{stack.key_prefix}:run:*", count=1000):
            # Celery's result metas carry no prefix: found through the runs' records.
            client.delete(f"celery-task-meta-{name.decode().rsplit(':', 1)[1]}")
        for name in client.scan_iter(f"*{suffix}*", count=1000):
            client.delete(name)
        client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--ignore-certificate-errors",  # the test's self-signed certificate
    ]  # fmt: skip
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield chromium
        chromium.close()


def _stored_events(stack: Stack, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    client = redis.Redis.from_url(SYSTEM_REDIS)
    try:
        entries = client.xrange(f"{stack.key_prefix}:events:run:{run_id}")
    finally:
        client.close()
    return [
        (entry_id.decode(), values[b"kind"].decode(), json.loads(values[b"data"]))
        for entry_id, values in entries
    ]


def _open_follow_page(stack: Stack, browser: Any) -> Any:
    """A logged-in page (the login's CSRF check passes only if Django sees https, from
    the proxy headers) showing the follow page, which nginx serves from STATIC_ROOT."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{stack.base_url}/accounts/login/")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{stack.base_url}/")
    response = page.goto(f"{stack.base_url}/static/nginx-follow.html")
    assert response is not None and response.status == 200
    return page


def _assert_every_event_arrived(stack: Stack, runs: dict[str, Any]) -> None:
    """Everything Redis logged for each run after its opening snapshot reached the page,
    in order and once (across reconnects too), every feed line among it."""
    for run_id, run in runs.items():
        assert run["url"].startswith(f"{stack.base_url}/tasks/{run_id}/events/"), run["url"]
        received = [(e["id"], e["kind"], e["data"]) for e in run["events"]]
        snapshot_id = received[0][0]
        stored = _stored_events(stack, run_id)
        after = [event for event in stored if _order(event[0]) > _order(snapshot_id)]
        assert received[1:] == after, (run_id, received, stored)
        feed = [event for event in stored if event[1] == "feed"]
        assert feed and all(event in received for event in feed), (run_id, feed)
        assert received[-1][2]["status"] == "SUCCESSFUL", received[-1]


def _stream_log_lines(stack: Stack, runs: dict[str, Any]) -> list[list[str]]:
    """nginx's log lines (connection, protocol, status, URI) of these runs' streams."""
    lines = [line.split() for line in stack.log("nginx-access").splitlines()]
    return [line for line in lines if "/events/" in line[3] and line[3].split("/")[2] in runs]


@live
def test_twenty_streams_over_http2_behind_nginx_lose_no_event(stack: Stack, browser: Any) -> None:
    page = _open_follow_page(stack, browser)
    outcome = page.evaluate(f"followRuns({RUNS})")
    page.close()

    runs: dict[str, Any] = outcome["runs"]
    assert len(runs) == RUNS
    # All 20 streams were open at the same moment: impossible over HTTP/1.1 (six per origin).
    assert outcome["maxOpen"] == RUNS, outcome["maxOpen"]
    assert outcome["pageProtocol"] == "h2"
    fetched = [protocol for name, protocol in outcome["protocols"] if "/api/documents/" in name]
    assert fetched == ["h2"] * RUNS, outcome["protocols"]
    _assert_every_event_arrived(stack, runs)
    retried = [r for r in runs.values() if any(e["data"].get("status") == "RETRYING" for e in r["events"])]  # fmt: skip
    assert len(retried) == RUNS // 2

    # nginx's own word: every stream came over HTTP/2, all on one connection.
    streams = _stream_log_lines(stack, runs)
    assert {line[3].split("/")[2] for line in streams} == set(runs)
    assert {line[1] for line in streams} == {"HTTP/2.0"}, streams
    assert len({line[0] for line in streams}) == 1, streams
    assert {line[2] for line in streams} == {"200"}, streams


@live
def test_restarting_the_web_instances_one_at_a_time_loses_no_event(
    stack: Stack, browser: Any
) -> None:
    """The upgrade's step 3 (docs/deployment.md): each web instance restarted in turn
    under open streams; every stream reconnects through nginx to the instance that is
    up, with Last-Event-ID, and misses nothing."""
    page = _open_follow_page(stack, browser)
    # Three runs busy during the restarts (three retries with backoff 1, 2 and 4 s: about
    # 10 s of events) and three that wait 20 s, so their streams live through both.
    page.evaluate(
        """() => { window.following = Promise.all([
            followRuns(3, {flaky: 3, countdown: 1}), followRuns(3, {flaky: 0, countdown: 20}),
        ]); }"""
    )
    page.wait_for_function("counter.open === 6")
    for port in WEB_PORTS:
        stack.restart(f"web-{port}", _web_ready(port))
    busy, waiting = page.evaluate("window.following")
    page.close()

    runs: dict[str, Any] = {**busy["runs"], **waiting["runs"]}
    assert len(runs) == 6
    for run in waiting["runs"].values():
        assert run["opens"] >= 2, run  # cut by a restart, and resumed
    _assert_every_event_arrived(stack, runs)
    streams = _stream_log_lines(stack, runs)
    assert {line[2] for line in streams} == {"200"}, streams  # no 502: nginx tried the other


def _order(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def test_the_stream_timeout_outlasts_the_keepalive_interval() -> None:
    """nginx cuts a stream silent for proxy_read_timeout: it must stay well above the
    default keep-alive interval (and the reference project's)."""
    from tasktrail.conf import SETTINGS

    stream_location = _site().split("location ~ /events/$ {", 1)[1].split("}", 1)[0]
    timeout = re.search(r"proxy_read_timeout (\d+)s;", stream_location)
    assert timeout is not None
    assert int(timeout.group(1)) >= 4 * float(SETTINGS["KEEPALIVE_INTERVAL"].default)
    for directive in ("proxy_buffering off;", "proxy_http_version 1.1;", 'Connection "";'):
        assert directive in stream_location, directive
