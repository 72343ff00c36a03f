"""``TASKTRAIL["ALERTS"]`` read into rules and channels, with every problem named.

::

    TASKTRAIL["ALERTS"] = {
        "CHANNELS": {
            "ops": {"type": "email", "to": ["ops@example.com"]},
            "slack": {"type": "slack", "url": "https://hooks.slack.com/services/..."},
            "pager": {"type": "webhook", "url": "https://pager.example.com/in",
                      "secret": os.environ["PAGER_SECRET"]},
        },
        "RULES": {
            "payments-failed": {"kind": "failed", "tasks": ["payments.*"],
                                "channels": ["ops", "slack"], "window": 300},
        },
        "INTERVAL": 30,
    }

:func:`parse` never raises: it returns what is usable and a list of problems, so the
system checks report every mistake at once and the evaluator skips only the bad rule.
"""

from __future__ import annotations

from typing import Any, TypeGuard
from urllib.parse import urlparse

import django

from .rules import (
    CHANNEL_FIELDS,
    CHANNEL_TYPES,
    DEFAULT_INTERVAL,
    DEFAULT_MIN_RUNS,
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
    KINDS,
    NEEDS_SECONDS,
    QUEUE_KINDS,
    RULE_FIELDS,
    TOP_LEVEL,
    Channel,
    Config,
    Problem,
    Rule,
)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _strings(value: Any) -> TypeGuard[list[str] | tuple[str, ...]]:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, str) and v for v in value)
    )


def _parse_channel(name: str, spec: Any, problems: list[Problem]) -> Channel | None:
    where = f"TASKTRAIL['ALERTS']['CHANNELS'][{name!r}]"

    def bad(message: str, hint: str) -> None:
        problems.append(Problem(id="tasktrail.E202", message=f"{where} {message}", hint=hint))

    kind = spec.get("type") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or kind not in CHANNEL_TYPES:
        bad(
            f"has no valid type ({kind!r}).",
            "Give it 'type': 'email', 'slack' or 'webhook' (docs/alerts.md).",
        )
        return None
    unknown = sorted(set(spec) - CHANNEL_FIELDS[kind])
    if unknown:
        bad(
            f"has unknown field(s) {', '.join(unknown)}.",
            f"A {kind} channel takes {', '.join(sorted(CHANNEL_FIELDS[kind]))}.",
        )
        return None
    timeout = spec.get("timeout", DEFAULT_TIMEOUT)
    if not _number(timeout):
        bad(f"has timeout {timeout!r}.", "Use a positive number of seconds.")
        return None
    if kind == "email":
        if not _strings(spec.get("to")):
            bad("needs 'to': a list of addresses.", "'to': ['ops@example.com']")
            return None
        sender = spec.get("from")
        if sender is not None and not isinstance(sender, str):
            bad("has a 'from' that is not a string.", "Leave it out for DEFAULT_FROM_EMAIL.")
            return None
        mailer = spec.get("mailer")
        if mailer is not None and (not isinstance(mailer, str) or django.VERSION < (6, 1)):
            bad(
                f"has mailer {mailer!r}.",
                "'mailer' names a MAILERS alias (Django 6.1 and later); leave it out for "
                "the default mailer.",
            )
            return None
        return Channel(
            name=name,
            type="email",
            to=tuple(spec["to"]),
            sender=sender,
            mailer=mailer,
            timeout=float(timeout),
        )
    url = spec.get("url")
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        bad(
            f"needs 'url': an http(s) URL (got {url!r}).",
            "Paste the incoming webhook's URL, e.g. 'https://hooks.slack.com/services/...'.",
        )
        return None
    secret = spec.get("secret", "")
    if kind == "webhook" and (not isinstance(secret, str) or not secret):
        bad(
            "needs 'secret': the HMAC key the receiver verifies the signature with.",
            "'secret': os.environ['ALERT_WEBHOOK_SECRET'] (read it from the environment; "
            "it is never stored in the database).",
        )
        return None
    if urlparse(url).scheme == "http" and urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        problems.append(
            Problem(
                id="tasktrail.W202",
                message=f"{where} sends alerts over plain http to {urlparse(url).netloc}.",
                hint="Use an https:// URL: run names and errors travel in the message.",
                warning=True,
            )
        )
    return Channel(name=name, type=kind, url=url, secret=str(secret), timeout=float(timeout))


def _parse_rule(
    rule_id: str, spec: Any, channels: dict[str, Any], problems: list[Problem]
) -> Rule | None:
    where = f"TASKTRAIL['ALERTS']['RULES'][{rule_id!r}]"

    def bad(message: str, hint: str, id: str = "tasktrail.E203") -> None:
        problems.append(Problem(id=id, message=f"{where} {message}", hint=hint))

    if not isinstance(spec, dict):
        bad("is not a dict.", "{'kind': 'failed', 'channels': ['ops']}")
        return None
    kind = spec.get("kind")
    if kind not in KINDS:
        bad(f"has kind {kind!r}.", f"Use one of {', '.join(KINDS)}.")
        return None
    unknown = sorted(set(spec) - RULE_FIELDS)
    if unknown:
        bad(
            f"has unknown field(s) {', '.join(unknown)}.",
            f"A rule takes {', '.join(sorted(RULE_FIELDS))} (docs/alerts.md).",
        )
        return None
    names = spec.get("channels")
    if not _strings(names):
        bad("needs 'channels': a list of channel names.", "'channels': ['ops']")
        return None
    missing = [n for n in names if n not in channels]
    if missing:
        bad(
            f"sends to unknown channel(s) {', '.join(missing)}.",
            f"Define them in TASKTRAIL['ALERTS']['CHANNELS'] (known: "
            f"{', '.join(sorted(channels)) or 'none'}).",
            id="tasktrail.E204",
        )
        return None
    for name in ("window", "seconds", "period"):
        if name in spec and not _number(spec[name]):
            bad(f"has {name} {spec[name]!r}.", f"'{name}' is a positive number of seconds.")
            return None
    if kind in NEEDS_SECONDS and "seconds" not in spec:
        bad("needs 'seconds', the bound it watches.", "'seconds': 600")
        return None
    threshold = spec.get("threshold")
    if kind == "failure_rate" and not (_number(threshold) and threshold <= 1):
        bad(f"needs 'threshold' between 0 and 1 (got {threshold!r}).", "'threshold': 0.2 (20%)")
        return None
    min_runs = spec.get("min_runs", DEFAULT_MIN_RUNS)
    if not (isinstance(min_runs, int) and not isinstance(min_runs, bool) and min_runs >= 1):
        bad(f"has min_runs {min_runs!r}.", "'min_runs' is a whole number of runs, at least 1.")
        return None
    for name in ("tasks", "queues"):
        if name in spec and (not _strings(spec[name])):
            bad(f"has {name} {spec[name]!r}.", f"'{name}': a list of names (fnmatch patterns).")
            return None
    allowed = ("queue", "rule") if kind in QUEUE_KINDS else ("task", "queue", "rule")
    group_by = spec.get("group_by", allowed[0])
    if group_by not in allowed:
        bad(f"has group_by {group_by!r}.", f"A {kind} rule groups by {' or '.join(allowed)}.")
        return None
    return Rule(
        id=rule_id,
        kind=kind,
        channels=tuple(names),
        window=float(spec.get("window", DEFAULT_WINDOW)),
        tasks=tuple(spec.get("tasks", ("*",))),
        queues=tuple(spec["queues"]) if "queues" in spec else None,
        seconds=float(spec["seconds"]) if "seconds" in spec else None,
        threshold=float(threshold) if threshold is not None else None,
        period=float(spec["period"]) if "period" in spec else None,
        min_runs=min_runs,
        group_by=group_by,
    )


def parse(raw: Any) -> tuple[Config, list[Problem]]:
    """What of ``raw`` is usable, and what is wrong with the rest."""
    problems: list[Problem] = []
    if not raw:
        return Config(), problems
    if not isinstance(raw, dict):
        problems.append(
            Problem(
                id="tasktrail.E201",
                message="TASKTRAIL['ALERTS'] is not a dict.",
                hint="{'CHANNELS': {...}, 'RULES': {...}} (docs/alerts.md)",
            )
        )
        return Config(), problems
    unknown = sorted(str(k) for k in set(raw) - set(TOP_LEVEL))
    if unknown:
        problems.append(
            Problem(
                id="tasktrail.E201",
                message=f"TASKTRAIL['ALERTS'] has unknown key(s) {', '.join(unknown)}.",
                hint=f"It takes {', '.join(TOP_LEVEL)}.",
            )
        )
    interval = raw.get("INTERVAL", DEFAULT_INTERVAL)
    if not _number(interval):
        problems.append(
            Problem(
                id="tasktrail.E201",
                message=f"TASKTRAIL['ALERTS']['INTERVAL'] = {interval!r}.",
                hint="Seconds between two evaluations by celery beat, e.g. 30.",
            )
        )
        interval = DEFAULT_INTERVAL
    sections = {}
    for key in ("CHANNELS", "RULES"):
        section = raw.get(key, {})
        if not isinstance(section, dict):
            problems.append(
                Problem(
                    id="tasktrail.E201",
                    message=f"TASKTRAIL['ALERTS'][{key!r}] is not a dict.",
                    hint="Name each entry: {'ops': {...}}.",
                )
            )
            section = {}
        sections[key] = section
    channels: dict[str, Channel] = {}
    for name, spec in sections["CHANNELS"].items():
        channel = _parse_channel(str(name), spec, problems)
        if channel is not None:
            channels[channel.name] = channel
    rules = []
    for rule_id, spec in sections["RULES"].items():
        rule = _parse_rule(str(rule_id), spec, sections["CHANNELS"], problems)
        if rule is not None and all(name in channels for name in rule.channels):
            rules.append(rule)
    used = {name for rule in rules for name in rule.channels}
    for name in sorted(set(channels) - used):
        problems.append(
            Problem(
                id="tasktrail.W201",
                message=f"The alert channel {name!r} is used by no rule.",
                hint="Add it to a rule's 'channels', or remove it.",
                warning=True,
            )
        )
    return Config(rules=tuple(rules), channels=channels, interval=float(interval)), problems


def load() -> Config:
    """The usable part of the current ``TASKTRAIL["ALERTS"]`` (problems are the checks')."""
    from ..conf import settings

    return parse(settings.ALERTS)[0]
