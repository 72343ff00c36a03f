"""A chord run by a real worker shows whole on the workflow timeline: every header
member and the callback, whichever member's timeline is asked, while it runs and after."""

from __future__ import annotations

from typing import Any

import pytest
from celery import chord
from django.contrib.auth.models import User
from django.test import Client

from tests.helpers import eventually
from tests.testapp.tasks import sleepy, tally

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.urls_ops"),
    pytest.mark.usefixtures("worker"),
]


def test_a_chord_of_20_appears_whole_with_its_callback() -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("boss-chord", "", "pw"))
    result = chord([sleepy.s(0.02) for _ in range(20)], tally.s()).apply_async()
    header = [member.id for member in result.parent.results]

    def bars(run_id: str) -> dict[str, Any]:
        response = client.get(f"/ops/runs/{run_id}/timeline/data/")
        assert response.status_code == 200, response.content
        return {bar["id"]: bar for bar in response.json()["bars"]}

    # At once, before the flusher saved them: the header from Redis's hot records.
    assert set(header) <= set(bars(header[0]))

    family = {*header, result.id}
    seen: list[tuple[int, str]] = []

    def whole() -> dict[str, Any] | None:
        # Whole, not merely finished: while the flusher's dirty set is too large to
        # scan (a busy shared Redis), members show only once saved, so a part of the
        # family can be all finished before the rest appears.
        response = client.get(f"/ops/runs/{header[-1]}/timeline/data/")
        found = {bar["id"]: bar for bar in response.json()["bars"]}
        seen.append((len(found), response.json()["note"]))
        done = set(found) == family and all(b["status"] == "SUCCESSFUL" for b in found.values())
        return found if done else None

    assert result.get(timeout=60) == 20
    try:
        found = eventually(whole, timeout=30, every=0.2)
    except AssertionError as never:
        raise AssertionError(f"never whole; last sizes and notes: {seen[-5:]}") from never
    callback = found[result.id]
    assert callback["task"] == "tests.testapp.tasks.tally"
    assert callback["parent"] in header  # published by the header member that ended last
    assert all(found[i]["group"] == found[header[0]]["group"] for i in header)
    assert all(b["enqueued"] <= b["started"] <= b["finished"] for b in found.values())
    # The callback's own timeline is the same family.
    assert set(bars(result.id)) == set(found)
