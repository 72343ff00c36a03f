"""Audit entries (src/tasktrail/audit.py): an action that happened is always recorded."""

from __future__ import annotations

import pytest

from tasktrail import audit
from tasktrail.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_a_nul_character_in_the_detail_does_not_lose_the_entry() -> None:
    """PostgreSQL's jsonb refuses NUL; the entry is written with it replaced."""
    audit.record("replay", None, "10.0.0.1", run_id="r1", after={"args": ["a\x00b"], "k\x00": 1})
    entry = AuditEntry.objects.get(run_id="r1")
    assert entry.detail == {"after": {"args": ["a\ufffdb"], "k\ufffd": 1}}
    assert (entry.actor_name, entry.address) == ("system", "10.0.0.1")
