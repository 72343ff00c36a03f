"""A prefork pool process is forked from a worker whose threads may hold tasktrail's
locks at that moment (the outage replayer, the journal's watcher). The child must get
working locks and none of its parent's pending work (the parent sends that itself)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tasktrail import journal, transitions


def _forked_while_held(lock: Any, in_child: Callable[[], bool]) -> int:
    """Fork while another thread holds ``lock``; the child's exit status is 0 if
    ``in_child()`` returned true within two seconds."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, whatever happens
        try:
            os._exit(0 if in_child() else 1)
        finally:
            os._exit(2)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() of a threaded process
def test_a_child_forked_during_an_outage_replay_neither_hangs_nor_replays() -> None:
    transitions._backlog.append(("run-of-the-parent", "progress", {}))
    try:

        def child() -> bool:
            got = transitions._backlog_lock.acquire(timeout=2)
            return got and not transitions._backlog

        assert _forked_while_held(transitions._backlog_lock, child) == 0
    finally:
        transitions._backlog.clear()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_child_forked_while_the_journal_is_busy_neither_hangs_nor_replays() -> None:
    journal._entries.append(journal.Kept(0.0, "redis://unused", "p", "run", "{}", None))
    try:

        def child() -> bool:
            got = journal._lock.acquire(timeout=2)
            return got and journal.size() == 0

        assert _forked_while_held(journal._lock, child) == 0
    finally:
        journal._entries.clear()
