"""Where messages go: Django's mail, Slack-compatible incoming webhooks, signed webhooks.

A sender raises :class:`ChannelError` (or any ``OSError``) when the message did not
get through; the delivery loop retries it later with backoff.

The generic webhook signs like :class:`tasktrail.webhooks.HmacSha256` verifies:
``X-Tasktrail-Signature`` is the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with the
channel's secret, and ``X-Tasktrail-Timestamp`` the epoch seconds, so a tasktrail
project receives another's alerts with ``HmacSha256(signature_header=SIGNATURE_HEADER,
timestamp_header=TIMESTAMP_HEADER, event_id_path="id", ...)``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from ..exceptions import TasktrailError
from ..webhooks import sign
from .rules import Channel

SIGNATURE_HEADER = "X-Tasktrail-Signature"
TIMESTAMP_HEADER = "X-Tasktrail-Timestamp"
USER_AGENT = "tasktrail-alerts"


class ChannelError(TasktrailError):
    """A message the channel did not accept."""


def _post(channel: Channel, body: bytes, headers: dict[str, str]) -> None:
    request = urllib.request.Request(
        channel.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with urllib.request.urlopen(
            request, timeout=channel.timeout
        ) as response:  # http(s) only: checked
            response.read()
    except urllib.error.HTTPError as exc:  # a 4xx/5xx: the receiver refused it
        raise ChannelError(f"{channel.name}: HTTP {exc.code} from {channel.target}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChannelError(f"{channel.name}: {channel.target} unreachable: {reason}") from None


def send_email(channel: Channel, subject: str, body: str, payload: dict[str, Any]) -> None:
    """Django's mail: on 6.1+ through the channel's mailer (``MAILERS``, whose OPTIONS
    hold the timeout), before that through ``EMAIL_*`` with the channel's timeout."""
    import django
    from django.core.mail import EmailMessage, get_connection

    message = EmailMessage(subject, body, channel.sender, list(channel.to))
    if django.VERSION >= (6, 1):
        sent = message.send(using=channel.mailer or "default")
    else:
        message.connection = get_connection(fail_silently=False, timeout=channel.timeout)
        sent = message.send()
    if not sent:
        raise ChannelError(f"{channel.name}: the mail backend sent nothing")


def send_slack(channel: Channel, subject: str, body: str, payload: dict[str, Any]) -> None:
    """Slack, Mattermost, Rocket.Chat, Teams workflows: ``{"text": ...}``."""
    text = f"*{subject}*\n{body}"
    _post(channel, json.dumps({"text": text}).encode(), {})


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    signature = sign(secret, timestamp.encode() + b"." + body)
    return {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}


def send_webhook(channel: Channel, subject: str, body: str, payload: dict[str, Any]) -> None:
    data = json.dumps({**payload, "subject": subject, "text": body}, sort_keys=True).encode()
    _post(channel, data, signed_headers(channel.secret, data))


SENDERS: dict[str, Callable[[Channel, str, str, dict[str, Any]], None]] = {
    "email": send_email,
    "slack": send_slack,
    "webhook": send_webhook,
}


def send(channel: Channel, subject: str, body: str, payload: dict[str, Any]) -> None:
    SENDERS[channel.type](channel, subject, body, payload)
