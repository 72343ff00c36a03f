"""Docs that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

import tasktrail
from tasktrail.conf import reference_table

ROOT = Path(__file__).resolve().parent.parent


def test_settings_reference_matches_the_code() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    assert reference_table() in text, "regenerate the table with tasktrail.conf.reference_table()"


def test_public_root_is_small_and_documented() -> None:
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "guide.md").read_text()
    assert len(tasktrail.__all__) <= 12
    for name in tasktrail.__all__:
        assert f"`{name}" in readme or f"{name}(" in readme, name
        assert getattr(tasktrail, name) is not None


def test_readme_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "uv run --no-dev --group example python -m example" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    # CI runs the README's test command verbatim: the last line of .ci/run.
    command = ci.strip().splitlines()[-1]
    assert command.startswith("uv run pytest && "), command
    assert f"```console\n{command}\n```" in readme
    # Both supported Django versions and both Pythons run the suite.
    assert "--group django6" in command
    assert "--python 3.13" in command
