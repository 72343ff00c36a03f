"""``tasktrail watch``: a live progress bar (rich) following a run's Redis event stream."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import CommandError

from tasktrail import keys
from tasktrail.connection import get_redis
from tasktrail.runs import Run, get_run
from tasktrail.status import FINISHED

INSTALL = 'pip install "django-tasktrail[rich]"'
LEVEL_STYLES = {"info": "", "success": "green", "warning": "yellow", "error": "red"}


def _rich() -> Any:
    try:
        import rich.progress
    except ImportError:
        raise CommandError(f"tasktrail watch needs rich: {INSTALL}") from None
    return rich.progress


def watch(run: Run, *, out: Any, timeout: float | None = None) -> Run | None:
    """Show the run's feed and progress until it ends (returned), or ``None`` when
    Ctrl-C or ``timeout`` stops the watch first (the run itself goes on)."""
    progress_module = _rich()
    from rich.console import Console

    console = Console(file=getattr(out, "_out", out), highlight=False)
    bar = progress_module.Progress(
        progress_module.TextColumn("{task.description}"),
        progress_module.BarColumn(),
        progress_module.TaskProgressColumn(),
        progress_module.TimeElapsedColumn(),
        console=console,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    stream = keys.run_stream(run.id)
    client = get_redis()
    last = "0-0"
    with bar:
        job = bar.add_task(
            f"{run.task} {run.status.value}",
            total=run.progress.total,
            completed=run.progress.current or 0,
        )
        try:
            while True:
                reply: Any = client.xread({stream: last}, block=500, count=500)
                ended = False
                for _, entries in reply or ():
                    for entry_id, values in entries:
                        last = entry_id.decode()
                        ended = _show(bar, job, run, values) or ended
                if ended or (not reply and get_run(run.id).status in FINISHED):
                    return _finish(bar, job, get_run(run.id))
                if deadline is not None and time.monotonic() > deadline:
                    bar.console.print("Timed out; the run goes on.")
                    return None
        except KeyboardInterrupt:
            bar.console.print("Stopped watching; the run goes on.")
            return None


def _show(bar: Any, job: Any, run: Run, values: dict[bytes, bytes]) -> bool:
    """Render one event; ``True`` when it is the run's terminal state."""
    from rich.markup import escape

    kind = values.get(b"kind", b"").decode()
    data = json.loads(values.get(b"data") or b"{}")
    if kind == "progress":
        bar.update(
            job,
            total=data.get("total"),
            completed=data.get("current") or 0,
            description=f"{run.task} {data.get('message') or ''}".strip(),
        )
    elif kind == "feed":
        style = LEVEL_STYLES.get(str(data.get("level")), "")
        text = escape(str(data.get("message", "")))
        bar.console.print(f"[{style}]{text}[/]" if style else text)
    elif kind == "state":
        bar.console.print(f"state: {data.get('status')}", markup=False)
        return data.get("status") in FINISHED
    return False


def _finish(bar: Any, job: Any, run: Run) -> Run:
    if run.status == "SUCCESSFUL" and bar.tasks[0].total:
        bar.update(job, completed=bar.tasks[0].total)
    bar.update(job, description=f"{run.task} {run.status.value}")
    if run.error is not None:
        bar.console.print(f"{run.error.type}: {run.error.message}", markup=False, style="red")
    elif run.status == "SUCCESSFUL":
        bar.console.print(f"result: {json.dumps(run.result, default=str)}", markup=False)
    return run
