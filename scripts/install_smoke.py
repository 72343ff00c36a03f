"""Install tasktrail as a user does and run the project the README's Install steps make.

    uv run python scripts/install_smoke.py

Builds the wheel (``uv build``), creates a virtualenv outside the repository, installs
the wheel and uvicorn into it (nothing of the repository's environment), writes a
project by the README's four steps (settings, the Celery app, URLs, ASGI with static
files), migrates it, starts a real ``celery worker`` on the Redis broker and a real
uvicorn, and checks end to end: the view's 202, the run SUCCESSFUL through the status
endpoint with its progress, the SSE stream, ``tasktrail.js`` served under ASGI, the
dashboard's static files, and ``manage.py check`` clean. Exits non-zero on any miss.
Uses Redis databases 14 (broker) and 15 (tasktrail) of ``SMOKE_REDIS`` (default
``redis://127.0.0.1:6379``) under a key prefix of its own, and cleans them up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS = os.environ.get("SMOKE_REDIS", "redis://127.0.0.1:6379")

FILES = {
    "myproject/__init__.py": """
        from .celery import app as celery_app

        __all__ = ["celery_app"]
    """,
    "myproject/celery.py": """
        import os

        from celery import Celery

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
        app = Celery("myproject")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.autodiscover_tasks()
    """,
    "myproject/settings.py": """
        import os
        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "smoke-only"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        ROOT_URLCONF = "myproject.urls"
        STATIC_URL = "/static/"
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        INSTALLED_APPS = [
            "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
            "django.contrib.messages", "django.contrib.staticfiles", "tasktrail", "shop",
        ]
        MIDDLEWARE = [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "tasktrail.middleware.RunOwnerMiddleware",
        ]
        TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
                      "APP_DIRS": True, "OPTIONS": {}}]
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                 "NAME": BASE_DIR / "db.sqlite3"}}
        TASKTRAIL = {"REDIS_URL": os.environ["SMOKE_TASKTRAIL_REDIS"],
                     "KEY_PREFIX": os.environ["SMOKE_PREFIX"]}
        CELERY_BROKER_URL = os.environ["SMOKE_BROKER"]
        CELERY_RESULT_BACKEND = "tasktrail.backend.TasktrailBackend"
        CELERY_TASK_DEFAULT_QUEUE = os.environ["SMOKE_PREFIX"]
        CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
    """,
    "myproject/urls.py": """
        from django.urls import include, path

        from shop.views import start

        urlpatterns = [
            path("tasks/", include("tasktrail.urls")),
            path("ops/", include("tasktrail.dashboard.urls")),
            path("start/<int:pk>/", start),
        ]
    """,
    "myproject/asgi.py": """
        import os

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")

        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
        from django.core.asgi import get_asgi_application

        application = ASGIStaticFilesHandler(get_asgi_application())
    """,
    "shop/__init__.py": "",
    "shop/tasks.py": """
        from tasktrail import feed, progress, tracked_task


        @tracked_task(autoretry_for=(ConnectionError,))
        def process_document(document_id: int) -> dict:
            for step, stage in enumerate(("parsing", "analysing", "indexing"), start=1):
                progress(step, 3, stage)
                feed(f"{stage} done", "success")
            return {"document": document_id}
    """,
    "shop/views.py": """
        from django.views.decorators.csrf import csrf_exempt

        from tasktrail import accepted, enqueue

        from .tasks import process_document


        @csrf_exempt
        def start(request, pk):
            return accepted(enqueue(process_document, pk, subject=f"document:{pk}"), request,
                            with_token=True)
    """,
    "manage.py": """
        import os
        import sys

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    """,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _first_sse_event(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("data:"):
                return dict(json.loads(line[5:]))
    raise AssertionError("the stream sent no event")


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tasktrail-smoke-"))
    prefix = f"smoke-{uuid.uuid4().hex[:8]}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(["uv", "build", "--wheel", "-o", str(work / "dist")], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        wheel = next((work / "dist").glob("*.whl"))
        venv = work / "venv"
        base = getattr(sys, "_base_executable", sys.executable)
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        subprocess.run(["uv", "venv", "-q", "--python", base, str(venv)], check=True, env=env)
        python = str(venv / "bin" / "python")
        subprocess.run(["uv", "pip", "install", "-q", "--python", python, str(wheel), "uvicorn"],
                       check=True, env=env)  # fmt: skip
        project = work / "project"
        for name, text in FILES.items():
            path = project / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip())
        run_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
            "SMOKE_PREFIX": prefix,
            "SMOKE_BROKER": f"{REDIS}/14",
            "SMOKE_TASKTRAIL_REDIS": f"{REDIS}/15",
            "PYTHONPATH": str(project),
        }
        assert str(ROOT) not in python

        def manage(*args: str) -> str:
            done = subprocess.run([python, "manage.py", *args], cwd=project, env=run_env,
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode:
                raise AssertionError(f"manage.py {' '.join(args)}: {done.stderr}")
            return done.stdout + done.stderr

        manage("migrate", "-v", "0")
        check = manage("check")
        assert "no issues" in check, check
        log = (work / "worker.log").open("wb")
        processes.append(subprocess.Popen(
            [python, "-m", "celery", "-A", "myproject", "worker", "-c", "1", "-l", "warning",
             "-n", f"{prefix}@%h", "--without-gossip", "--without-mingle"],
            cwd=project, env=run_env, stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        port = _free_port()
        processes.append(subprocess.Popen(
            [python, "-m", "uvicorn", "myproject.asgi:application", "--port", str(port),
             "--log-level", "warning"],
            cwd=project, env=run_env, stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("uvicorn did not start") from None
                time.sleep(0.2)

        status, headers, body = _http("POST", f"{base_url}/start/7/")
        assert status == 202, (status, body)
        reply = json.loads(body)
        assert headers["Location"] == reply["status_url"]
        deadline = time.monotonic() + 90  # the worker may still be starting
        while True:
            status, _, body = _http("GET", reply["status_url"])
            run = json.loads(body)
            if run["status"] == "SUCCESSFUL":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the run did not finish: {run}")
            time.sleep(0.3)
        assert run["result"] == {"document": 7}, run
        assert run["progress"]["percent"] == 100, run
        first = _first_sse_event(reply["events_url"])
        assert first["status"] == "SUCCESSFUL", first
        for asset in ("tasktrail/tasktrail.js", "tasktrail/dashboard/dashboard.css"):
            status, _, body = _http("GET", f"{base_url}/static/{asset}")
            assert status == 200, asset
            assert body, asset
        print(f"install smoke passed in {time.monotonic() - started:.1f}s: wheel {wheel.name}, "
              f"run {run['id']} SUCCESSFUL, stream and static files served")  # fmt: skip
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        import redis

        for db in (14, 15):
            client = redis.Redis.from_url(f"{REDIS}/{db}")
            for key in client.scan_iter(f"*{prefix}*", count=1000):
                client.delete(key)
            for key in client.scan_iter("celery-task-meta-*", count=1000):
                client.delete(key)
        if os.environ.get("SMOKE_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
