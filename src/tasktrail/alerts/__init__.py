"""Alerts: rules over the run record, sent once per group and window to e-mail, Slack
or a signed webhook (docs/alerts.md).

- ``rules``: rules and channels as frozen values.
- ``validation``: ``TASKTRAIL["ALERTS"]`` read into them, every problem named (the
  system checks and the evaluator share it).
- ``evaluation``: what each rule kind finds right now, as firings per group and window.
- ``models`` / ``delivery``: the claim table that makes a message go out once, however
  many evaluators run, and the sending with retries.
- ``channels``: e-mail, Slack-compatible and signed HTTP webhooks.
- ``tasks``: the ``tasktrail.evaluate_alerts`` task celery beat runs.

Nothing here is imported by the core; ``connect()`` is called from the app's ``ready()``.
"""

from __future__ import annotations


def connect() -> None:
    """Register the evaluation task and its beat entry (``TasktrailConfig.ready()``)."""
    from celery import signals

    from .tasks import install_beat_entry

    signals.beat_init.connect(install_beat_entry, weak=False, dispatch_uid="tasktrail.alerts")
