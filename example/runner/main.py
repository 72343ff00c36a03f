"""``uv run python -m example [--smoke]``: web, worker, beat and Redis on one command."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from types import FrameType

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .client import Client
from .config import Config
from .services import (
    ROOT,
    Services,
    StartupError,
    free_port,
    http_ready,
    log_contains,
    python,
    redis_answers,
    start_valkey,
    wait_until,
)

DEMO_USER = ("demo", "demo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example",
        description="Run tasktrail's reference project: web (uvicorn), Celery worker and "
        "beat, and a private Valkey when REDIS_URL does not answer.",
    )
    parser.add_argument(
        "--smoke", action="store_true",
        help="drive every scenario through the HTTP API, print a table, exit non-zero on failure",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help="web port (default 8000, or free)")
    parser.add_argument("--data-dir", help="database, files and logs (default example/.data)")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children exactly like Ctrl-C


def _port(requested: int, smoke: bool) -> int:
    if requested:
        return requested
    if not smoke:
        import socket

        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", 8000)) != 0:
                return 8000
    return free_port()


def _manage(config: Config, *args: str) -> None:
    result = subprocess.run(
        python("example/manage.py", *args),
        cwd=ROOT,
        env=config.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StartupError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


def _start(config: Config, services: Services, console: Console, concurrency: int) -> None:
    # Only a Redis it was told to use: demo data never lands in whatever listens on 6379.
    requested = os.environ.get("REDIS_URL")
    if requested and redis_answers(requested):
        config.redis_url = requested
    else:
        why = f"Nothing answers at {requested}" if requested else "REDIS_URL is not set"
        console.print(f"[dim]{why}; starting a private Valkey.[/]")
        config.redis_url = start_valkey(services, config.data_dir, config.env())
        config.private_redis = True
    env = config.env()
    console.print("[dim]Migrating the database and creating the demo data...[/]")
    _manage(config, "migrate", "--noinput")
    _manage(config, "example_setup", "--user", DEMO_USER[0], "--password", DEMO_USER[1], "--staff")
    if config.smoke:
        _manage(config, "example_setup", "--user", "other", "--password", "other", "--no-data")
    data = config.data_dir
    web = services.start(
        "web",
        python(
            "-m", "uvicorn", "example.project.asgi:application", "--host", "127.0.0.1",
            "--port", str(config.port), "--log-level", "warning",
            "--timeout-graceful-shutdown", "3",
        ),
        env, data / "web.log", grace=6.0,
    )  # fmt: skip
    worker = services.start(
        "worker",
        python(
            "-m", "celery", "-A", "example.project", "worker", "-P", "prefork",
            "-c", str(max(1, concurrency)), "-l", "info", "-n", f"example-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle",
        ),
        env, data / "worker.log", grace=10.0,
    )  # fmt: skip
    beat = services.start(
        "beat",
        python(
            "-m", "celery", "-A", "example.project", "beat", "-l", "info",
            "-s", str(data / "celerybeat-schedule"), "--pidfile", str(data / "beat.pid"),
        ),
        env, data / "beat.log", grace=5.0,
    )  # fmt: skip
    wait_until(lambda: http_ready(config.base_url + "/accounts/login/"), 60, "uvicorn", web)
    wait_until(lambda: log_contains(worker.log, " ready."), 90, "the Celery worker", worker)
    wait_until(lambda: log_contains(beat.log, "beat: Starting"), 30, "Celery beat", beat)
    services.check()


def _where(config: Config) -> Table:
    table = Table.grid(padding=(0, 2))
    for name, value in config.describe().items():
        table.add_row(f"[bold]{name}[/]", value)
    return table


def _smoke(config: Config, console: Console) -> int:
    from .scenarios import CHECKS, Context, run_checks

    started = time.monotonic()
    console.print(f"Running {len(CHECKS)} scenario checks through the HTTP API...")
    outcomes = run_checks(
        Context(config.base_url, config.data_dir),
        on_done=lambda o: console.print(
            f"  {'[green]ok[/]' if o.ok else '[red]FAILED[/]'}  {o.name} ({o.seconds:.1f} s)"
        ),
    )
    table = Table(title="tasktrail example: smoke")
    for column in ("Scenario", "Expected", "Result", "Detail", "Seconds"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        verdict = "[green]ok[/]" if o.ok else "[red]FAILED[/]"
        table.add_row(o.name, o.expected, verdict, o.detail, f"{o.seconds:.1f}")
    console.print(table)
    failed = [o for o in outcomes if not o.ok]
    console.print(
        f"{len(outcomes) - len(failed)}/{len(outcomes)} passed in "
        f"{time.monotonic() - started:.1f} s of checks"
    )
    return 1 if failed else 0


def _demo(config: Config, console: Console) -> None:
    from .demo import show, submit_all

    client = Client(config.base_url)
    client.login(*DEMO_USER)
    tracked = submit_all(client)
    footer = Panel(
        f"Open [bold]{config.base_url}/[/] and log in as [bold]demo[/] / [bold]demo[/]; "
        f"the staff dashboard is [bold]{config.base_url}/ops/[/].\n"
        f"Logs: {config.data_dir}/{{web,worker,beat}}.log.  Ctrl-C stops everything.",
        title="tasktrail example is running",
    )
    show(client, tracked, footer, console)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    config = Config.create(
        smoke=args.smoke, port=_port(args.port, args.smoke), data_dir=args.data_dir
    )
    services = Services()
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        _start(config, services, console, args.concurrency)
        console.print(_where(config))
        console.print(f"[dim]Everything started in {time.monotonic() - started:.1f} s.[/]")
        if args.smoke:
            code = _smoke(config, console)
            console.print(f"Smoke finished in {time.monotonic() - started:.1f} s in all.")
            return code
        _demo(config, console)
        return 0
    except KeyboardInterrupt:
        console.print(
            "\nStopping web, worker, beat" + (" and Valkey" if config.private_redis else "") + "..."
        )
        return 0 if not args.smoke else 130
    except StartupError as exc:
        console.print(f"[red]Could not start:[/] {exc}")
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        services.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        config.cleanup()
