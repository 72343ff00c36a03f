"""Evaluate every rule, claim what fired, send what is due: safe in any number of processes.

1. **Claim.** Each firing becomes one :class:`AlertDelivery` row per channel, inserted
   before anything is sent. The unique ``(rule, group, window_start, channel)`` lets
   exactly one insert win; the losers saw a message that is already someone's.
2. **Take.** A pending row due now is taken by a conditional ``UPDATE`` that moves its
   ``next_attempt_at`` a lease ahead and counts the attempt; only one process matches.
3. **Send, then mark sent.** On failure the row waits ``2**attempts`` seconds (capped)
   and is taken again, up to ``MAX_ATTEMPTS``. A process that dies between sending
   and marking leaves the lease to lapse, and another sends again: at least once to
   the channel, never two claims for one group and window.

One rule or channel that fails is logged and skipped; the others go on.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from . import channels as channel_senders
from .evaluation import LOOKBACK, Firing, find
from .models import AlertDelivery
from .rules import Config, Rule
from .validation import load

logger = logging.getLogger("tasktrail")

LEASE = 120.0  # seconds a taken row is its sender's (well above a channel's timeout)
MAX_ATTEMPTS = 10
MAX_BACKOFF = 3600.0
BATCH = 100
KEEP = 30 * 86400.0  # seconds a settled delivery stays listed
SENDER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(kw_only=True)
class Report:
    """What one evaluation did (counts for this process only)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def backoff(attempts: int) -> float:
    return float(min(2**attempts, MAX_BACKOFF))


def current_time() -> datetime:
    """The Redis server's clock: every evaluator cuts windows on the same time. While
    Redis is down, this host's clock (rules on the database still evaluate)."""
    import redis

    from ..connection import get_redis
    from ..workers import redis_now

    try:
        return datetime.fromtimestamp(redis_now(get_redis()), UTC)
    except redis.RedisError as exc:
        logger.warning("tasktrail: alerts use this host's clock, Redis failed: %s", exc)
        return datetime.now(UTC)


def message(rule: Rule, firing: Firing) -> tuple[str, str, dict[str, Any]]:
    """Subject, text and webhook payload of one firing (the same for every channel)."""
    end = firing.window_start + timedelta(seconds=rule.window)
    # One line: a queue or task name must not fold or inject mail headers.
    subject = " ".join(f"[tasktrail] {rule.id}: {firing.summary}".split())[:255]
    lines = [
        f"Rule {rule.id}: {rule.describe()}.",
        firing.summary + ".",
        f"Group: {firing.group}. Count in this window so far: {firing.count}.",
        f"Window: {firing.window_start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC "
        f"(one message per group and window).",
    ]
    if firing.examples:
        lines.append("Examples: " + ", ".join(firing.examples))
    payload = {
        "id": f"{rule.id}:{firing.group}:{firing.window_start.isoformat()}",
        "rule": rule.id,
        "kind": rule.kind,
        "group": firing.group,
        "window_start": firing.window_start.isoformat(),
        "window_seconds": rule.window,
        "count": firing.count,
        "examples": list(firing.examples),
    }
    return subject, "\n".join(lines), payload


def claim(rule: Rule, firings: list[Firing], now: datetime) -> int:
    """Insert each firing's rows (one per channel); return how many this process won.
    Rows that exist already (the usual case: every round sees the same firings again)
    are read first, so the database is not asked for a doomed insert each round; they
    only get their count raised when more events arrived since."""
    if not firings:
        return 0
    seen = {
        (group, start, channel): count
        for group, start, channel, count in AlertDelivery.objects.filter(
            rule=rule.id, window_start__in={f.window_start for f in firings}
        ).values_list("group", "window_start", "channel", "count")
    }
    won = 0
    for firing in firings:
        subject, body, payload = message(rule, firing)
        group = firing.group[:255]
        for name in rule.channels:
            key = {
                "rule": rule.id,
                "group": group,
                "window_start": firing.window_start,
                "channel": name,
            }
            known = seen.get((group, firing.window_start, name))
            if known is None:
                try:
                    with transaction.atomic():
                        AlertDelivery.objects.create(
                            **key,
                            kind=rule.kind,
                            count=firing.count,
                            subject=subject,
                            body=body,
                            payload=payload,
                            claimed_at=now,
                            next_attempt_at=now,
                            sender=SENDER,
                        )
                    won += 1
                    continue
                except IntegrityError:
                    known = 0  # another process claimed it a moment ago
            if known < firing.count:
                AlertDelivery.objects.filter(**key, count__lt=firing.count).update(
                    count=firing.count
                )
    return won


def prune(now: datetime, rules: tuple[Rule, ...]) -> int:
    """Delete settled rows long past their window, a batch per round. A claim is kept
    well beyond any rule's look-back: deleting it earlier would let its window send again."""
    longest = max([LOOKBACK, *(rule.window for rule in rules)])
    cutoff = now - timedelta(seconds=max(KEEP, 2 * longest))
    old = AlertDelivery.objects.filter(claimed_at__lt=cutoff).exclude(
        state=AlertDelivery.State.PENDING
    )
    ids = list(old.order_by("claimed_at").values_list("pk", flat=True)[:BATCH])
    return AlertDelivery.objects.filter(pk__in=ids).delete()[0] if ids else 0


def _take(row: AlertDelivery, now: datetime) -> bool:
    taken = AlertDelivery.objects.filter(
        pk=row.pk,
        state=AlertDelivery.State.PENDING,
        attempts=row.attempts,
        next_attempt_at__lte=now,
    ).update(
        next_attempt_at=now + timedelta(seconds=LEASE), attempts=F("attempts") + 1, sender=SENDER
    )
    return taken == 1


def deliver_due(config: Config, now: datetime, report: Report) -> None:
    due = list(
        AlertDelivery.objects.filter(
            state=AlertDelivery.State.PENDING, next_attempt_at__lte=now
        ).order_by("next_attempt_at")[:BATCH]
    )
    for row in due:
        if not _take(row, now):
            continue  # another process has it
        attempts = row.attempts + 1
        channel = config.channels.get(row.channel)
        try:
            if channel is None:
                raise channel_senders.ChannelError(f"the channel {row.channel!r} is not configured")
            channel_senders.send(channel, row.subject, row.body, row.payload)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            final = channel is None or attempts >= MAX_ATTEMPTS
            AlertDelivery.objects.filter(pk=row.pk).update(
                state=AlertDelivery.State.FAILED if final else AlertDelivery.State.PENDING,
                next_attempt_at=now + timedelta(seconds=backoff(attempts)),
                last_error=error[:2000],
            )
            report.failed += 1
            report.errors.append(error)
            logger.warning(
                "tasktrail: alert %s via %s, attempt %d: %s%s",
                row.rule,
                row.channel,
                attempts,
                error,
                " (giving up)" if final else "",
            )
            continue
        AlertDelivery.objects.filter(pk=row.pk).update(
            state=AlertDelivery.State.SENT, sent_at=now, last_error=""
        )
        report.sent += 1


def evaluate(now: datetime | None = None, config: Config | None = None) -> Report:
    """One round: every rule, then every due delivery. Never raises for one rule or
    channel; a database that is down ends the round (the next one catches up)."""
    config = load() if config is None else config
    now = current_time() if now is None else now
    report = Report()
    for rule in config.rules:
        try:
            report.claimed += claim(rule, find(rule, now), now)
        except DatabaseError:
            raise
        except Exception as exc:
            report.errors.append(f"{rule.id}: {exc}")
            logger.exception("tasktrail: alert rule %s could not be evaluated", rule.id)
    deliver_due(config, now, report)
    prune(now, config.rules)
    return report
