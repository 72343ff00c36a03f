"""System checks: configuration mistakes fail at start-up with a hint, not in the worker."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.apps import apps
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver
from django.urls.resolvers import RegexPattern

from .cluster import EXAMPLE as CLUSTER_EXAMPLE
from .cluster import check_url as cluster_url_problem
from .cluster import is_cluster_url
from .conf import SETTINGS
from .sentinel import EXAMPLE as SENTINEL_EXAMPLE
from .sentinel import InvalidSentinelURL, is_sentinel_url, parse_sentinel_url

MIGRATE_HINT = "Run `python manage.py migrate`."


def register() -> None:
    checks.register(check_settings, "tasktrail")
    checks.register(check_serializers, "tasktrail")
    checks.register(check_result_backend, "tasktrail")
    checks.register(check_migrations, "tasktrail")
    checks.register(check_metrics, "tasktrail", checks.Tags.urls)
    checks.register(check_alerts, "tasktrail")


def check_alerts(**_: Any) -> list[checks.CheckMessage]:
    """``TASKTRAIL["ALERTS"]``: every mistake at once, ids tasktrail.E2xx / W2xx."""
    from .alerts.validation import parse
    from .conf import settings

    return [
        (checks.Warning if p.warning else checks.Error)(p.message, hint=p.hint, id=p.id)
        for p in parse(settings.ALERTS)[1]
    ]


def check_installed(**_: Any) -> list[checks.CheckMessage]:
    if apps.is_installed("tasktrail"):
        return []
    return [
        checks.Error(
            "tasktrail's URLs are included but the app is not installed.",
            hint="Add 'tasktrail' to INSTALLED_APPS.",
            id="tasktrail.E001",
        )
    ]


class _NotInstalledPattern(URLPattern):
    """The URLs of an app that is not installed: Django's URL check asks every pattern
    for its messages, and this one answers E001. (A check registered while the URLconf
    is imported would never run: ``check`` lists its checks before it imports URLs, and
    ``ready()`` never runs for an app missing from INSTALLED_APPS.)"""

    def check(self) -> list[checks.CheckMessage]:
        return check_installed()


def _not_installed(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    raise ImproperlyConfigured("tasktrail's URLs are included; add 'tasktrail' to INSTALLED_APPS.")


def not_installed_urlpatterns() -> list[URLPattern]:
    """What tasktrail's URL modules hold when the app is not installed (their views
    would fail on the models at import)."""
    return [_NotInstalledPattern(RegexPattern(r"^", is_endpoint=False), _not_installed)]


def unapplied_migrations() -> list[str]:
    """tasktrail's migrations the database has not applied (its own names)."""
    from django.db import connections, router
    from django.db.migrations.recorder import MigrationRecorder

    from .models import TaskRun

    connection = connections[router.db_for_write(TaskRun)]
    package = importlib.import_module("tasktrail.migrations")
    on_disk = sorted(
        name for _, name, _ in pkgutil.iter_modules(package.__path__) if not name.startswith("_")
    )
    recorder = MigrationRecorder(connection)
    applied = {n for app, n in recorder.applied_migrations() if app == "tasktrail"}
    return [name for name in on_disk if name not in applied]


def describe_unapplied(names: list[str]) -> str:
    return f"{len(names)} tasktrail migration(s) not applied ({', '.join(names)})"


def check_migrations(**_: Any) -> list[checks.CheckMessage]:
    """Unapplied migrations: the flusher can never write a record (issue 11, item 5).
    A warning, not an error: ``migrate`` itself runs the checks first."""
    from django.db import DatabaseError, connections, router

    from .models import TaskRun

    connection = connections[router.db_for_write(TaskRun)]
    name = connection.settings_dict.get("NAME")
    if connection.vendor == "sqlite" and str(name) != ":memory:" and not Path(str(name)).exists():
        problem = f"The database {name} does not exist yet"  # not created to say so
    else:
        try:
            missing = unapplied_migrations()
        except DatabaseError:
            return []  # unreachable: the healthcheck's business, not configuration
        if not missing:
            return []
        problem = describe_unapplied(missing)
    return [
        checks.Warning(
            f"{problem}: runs pile up in Redis and never reach the database.",
            hint=MIGRATE_HINT,
            id="tasktrail.W003",
        )
    ]


def _views(patterns: list[Any]) -> Iterator[Callable[..., Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            view: Any = pattern.callback
            while view is not None:
                yield view
                view = getattr(view, "__wrapped__", None)


def _metrics_mounted() -> bool:
    from django.urls import get_resolver

    from .metrics import metrics_view

    try:
        return any(view is metrics_view for view in _views(get_resolver().url_patterns))
    except Exception:  # a broken URLconf: Django's own URL check reports it
        return False


def check_metrics(**_: Any) -> list[checks.CheckMessage]:
    """``/metrics`` mounted: its extra must be installed, and it must not be open to
    anyone in production."""
    from .conf import settings
    from .metrics import INSTALL

    if not _metrics_mounted():
        return []
    messages: list[checks.CheckMessage] = []
    try:
        importlib.import_module("prometheus_client")
    except ImportError:
        messages.append(
            checks.Error(
                "tasktrail.metrics.metrics_view is mounted but prometheus-client is not "
                "installed: every scrape would fail.",
                hint=INSTALL,
                id="tasktrail.E006",
            )
        )
    if not settings.METRICS_TOKEN and not django_settings.DEBUG:
        messages.append(
            checks.Warning(
                "tasktrail's /metrics is open to anonymous callers (no METRICS_TOKEN): task "
                "names, queues and worker host names are public.",
                hint="Set TASKTRAIL['METRICS_TOKEN'] and scrape with "
                "'Authorization: Bearer <token>'.",
                id="tasktrail.W004",
            )
        )
    return messages


def _check_redis_url(url: object) -> list[checks.CheckMessage]:
    if is_cluster_url(url):
        from .conf import settings

        problem = cluster_url_problem(str(url))
        if problem is None and set(str(settings.KEY_PREFIX)) & {"{", "}"}:
            problem = "KEY_PREFIX holds a brace, which would take over the keys' hash tags"
        if problem is None and int(settings.CLUSTER_SHARDS) < 1:
            problem = f"CLUSTER_SHARDS is {settings.CLUSTER_SHARDS}; it must be 1 or more"
        if problem is None:
            return []
        return [
            checks.Error(
                f"TASKTRAIL['REDIS_URL'] names a Redis Cluster that cannot be used: {problem}.",
                hint="Write redis+cluster://[[user]:password@]host[:port][,host[:port]...], "
                f"e.g. {CLUSTER_EXAMPLE!r}, and a KEY_PREFIX without braces (docs/settings.md).",
                id="tasktrail.E005",
            )
        ]
    if is_sentinel_url(url):
        try:
            parse_sentinel_url(str(url))
        except InvalidSentinelURL as exc:
            return [
                checks.Error(
                    f"TASKTRAIL['REDIS_URL'] is not a valid Sentinel URL: {exc.problem}.",
                    hint="Write redis+sentinel://[[user]:password@]host[:port][,host[:port]...]"
                    f"/service_name[/db], e.g. {SENTINEL_EXAMPLE!r} (docs/settings.md).",
                    id="tasktrail.E005",
                )
            ]
        return []
    if not isinstance(url, str) or urlparse(url).scheme not in ("redis", "rediss", "unix"):
        return [
            checks.Error(
                f"TASKTRAIL['REDIS_URL'] is not a Redis URL: {url!r}.",
                hint="Use redis://host:port/db, rediss:// (TLS), unix:///path/to/socket, "
                "redis+sentinel://host:26379,host2:26379/service_name/db for Sentinel, or "
                "redis+cluster://host:6379,host2:6379 for a Redis Cluster.",
                id="tasktrail.E005",
            )
        ]
    return []


def check_settings(**_: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    user = getattr(django_settings, "TASKTRAIL", {})
    if not isinstance(user, dict):
        return [
            checks.Error(
                "TASKTRAIL must be a dict.",
                hint="TASKTRAIL = {'REDIS_URL': 'redis://127.0.0.1:6379/0'}",
                id="tasktrail.E004",
            )
        ]
    url = user.get("REDIS_URL")
    if not url:
        errors.append(
            checks.Error(
                "No Redis URL configured for tasktrail's event log.",
                hint="Set TASKTRAIL = {'REDIS_URL': 'redis://127.0.0.1:6379/0'} in your settings.",
                id="tasktrail.E002",
            )
        )
    else:
        errors.extend(_check_redis_url(url))
    for name, value in user.items():
        setting = SETTINGS.get(name)
        if setting is None:
            errors.append(
                checks.Warning(
                    f"Unknown tasktrail setting TASKTRAIL[{name!r}].",
                    hint=f"Known settings: {', '.join(sorted(SETTINGS))}.",
                    id="tasktrail.W001",
                )
            )
        elif name != "REDIS_URL" and (
            not isinstance(value, setting.types)
            or (isinstance(value, bool) and bool not in setting.types)
            or (isinstance(value, int | float) and not isinstance(value, bool) and value <= 0)
        ):
            kinds = " or ".join(t.__name__ for t in setting.types)
            errors.append(
                checks.Error(
                    f"TASKTRAIL[{name!r}] = {value!r} is invalid.",
                    hint=(
                        f"It must be a positive {kinds} ({setting.help}); "
                        f"default {setting.default!r}."
                    ),
                    id="tasktrail.E004",
                )
            )
    errors.extend(_check_trace_url(user.get("TRACE_URL")))
    return errors


def _check_trace_url(value: Any) -> list[checks.CheckMessage]:
    """A link template that could not open a trace is refused at start-up, not in a page."""
    if value is None or not isinstance(value, str):
        return []  # absent, or a wrong type (reported with the other settings)
    if urlparse(value).scheme in ("http", "https") and "{trace_id}" in value:
        return []
    return [
        checks.Error(
            f"TASKTRAIL['TRACE_URL'] = {value!r} is not a usable trace link.",
            hint="Use an http(s) URL containing {trace_id}, e.g. "
            "'https://tempo.example/trace/{trace_id}', or None.",
            id="tasktrail.E004",
        )
    ]


def _celery_conf() -> Any:
    from celery import current_app

    return current_app.conf


def check_serializers(**_: Any) -> list[checks.CheckMessage]:
    conf = _celery_conf()
    accepted = {str(c).lower() for c in (conf.accept_content or ())}
    chosen = {str(conf.task_serializer).lower(), str(conf.result_serializer).lower()}
    risky = sorted(
        {c for c in accepted | chosen if "pickle" in c or c == "application/x-python-serialize"}
    )
    if not risky:
        return []
    return [
        checks.Error(
            f"Celery accepts or sends pickle ({', '.join(risky)}): a message from anyone who "
            "can write to the broker can run code in your workers.",
            hint="Set CELERY_ACCEPT_CONTENT = ['json'], CELERY_TASK_SERIALIZER = 'json' and "
            "CELERY_RESULT_SERIALIZER = 'json'; pass ids and plain data to tasks.",
            id="tasktrail.E003",
        )
    ]


def check_result_backend(**_: Any) -> list[checks.CheckMessage]:
    """Without tasktrail's result backend, states Celery only writes there never reach
    the record: ``update_state`` progress, chain steps and chord bodies Celery fails
    without running them, ``Ignore`` after ``update_state``."""
    from celery.app.backends import by_url

    from .backend import BACKEND_PATH

    # The Django setting (Celery's conventional namespace) when the project's Celery app
    # is not loaded in this process (manage.py check usually runs without it).
    backend = getattr(django_settings, "CELERY_RESULT_BACKEND", None)
    if backend is None:
        backend = _celery_conf().result_backend
    name = backend if isinstance(backend, str) else getattr(backend, "__qualname__", "")
    try:
        found: Any = backend if isinstance(backend, type) else by_url(backend)
        backend_class = found if isinstance(found, type) else found[0]
    except Exception:  # an unknown backend: Celery reports it itself
        backend_class = None
    if getattr(backend_class, "records_runs", False):
        return []
    return [
        checks.Warning(
            f"Celery's result backend is {name or 'not set'!r}, not tasktrail's: the record "
            "misses what Celery stores only there (update_state progress, chain steps and "
            "chord bodies failed without running, Ignore after update_state).",
            hint=f"Set CELERY_RESULT_BACKEND = {BACKEND_PATH!r}; to keep another backend, "
            "mix tasktrail.backend.RecordingBackendMixin into its class "
            "(docs/reliability.md).",
            id="tasktrail.W002",
        )
    ]
