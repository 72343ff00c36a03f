"""``manage.py tasktrail``: list, show, watch, retry, replay, cancel, prune, stats, healthcheck.

A thin shell: the work is done by :mod:`tasktrail.operations`, :mod:`tasktrail.stats`,
:mod:`tasktrail.retention`, :mod:`tasktrail.actions`, :mod:`tasktrail.replay` and
:mod:`tasktrail.runs`.
"""

from __future__ import annotations

import getpass
import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasktrail import actions, checks, operations, replay, retention, stats
from tasktrail.exceptions import RunNotFound
from tasktrail.redaction import redact
from tasktrail.runs import Run, get_run

from ._watch import watch

FILTERS = ("status", "task", "queue", "owner", "since", "until", "search")


def _add_filters(parser: ArgumentParser) -> None:
    parser.add_argument("--status", help="READY, RUNNING, RETRYING, SUCCESSFUL, FAILED, ...")
    parser.add_argument("--task", help="Exact task name.")
    parser.add_argument("--queue", help="Queue (routing key) name.")
    parser.add_argument("--owner", help="Owner's username, or #<user id>.")
    parser.add_argument("--since", help="30m, 24h, 7d or an ISO date and time.")
    parser.add_argument("--until", help="30m, 24h, 7d or an ISO date and time.")
    parser.add_argument("--search", help="Text in the arguments (or a run id).")


def _stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


class Command(BaseCommand):
    help = (
        "Operate tasktrail runs: list, show, watch, retry, replay, cancel, prune, stats, "
        "healthcheck."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
        listing = commands.add_parser("list", help="Runs, newest first.")
        _add_filters(listing)
        listing.add_argument("--limit", type=int, default=20, help="Most runs shown (20).")
        listing.add_argument("--json", action="store_true", help="One JSON object per line.")
        show = commands.add_parser("show", help="One run in full.")
        show.add_argument("run_id")
        show.add_argument("--json", action="store_true", help="The run as JSON.")
        follow = commands.add_parser("watch", help="Follow a run live until it ends.")
        follow.add_argument("run_id")
        follow.add_argument("--timeout", type=float, default=None, help="Give up after seconds.")
        for name, verb in (("retry", "Retry failed"), ("cancel", "Cancel waiting or running")):
            sub = commands.add_parser(name, help=f"{verb} runs, by id or by filter.")
            sub.add_argument("run_ids", nargs="*", metavar="RUN_ID")
            _add_filters(sub)
            sub.add_argument("--yes", action="store_true", help="Act on a filter without asking.")
            sub.add_argument(
                "--limit", type=int, default=operations.BULK_LIMIT, help="Most runs per call."
            )
            if name == "cancel":
                sub.add_argument("--terminate", action="store_true", help="Kill running processes.")
        again = commands.add_parser(
            "replay", help="Run a finished run again with edited arguments, as a new run."
        )
        again.add_argument("run_id")
        again.add_argument(
            "--args", dest="args_json", help="Positional arguments, a JSON list (default: stored)."
        )
        again.add_argument(
            "--kwargs",
            dest="kwargs_json",
            help="Keyword arguments, a JSON object (default: stored).",
        )
        prune = commands.add_parser("prune", help="Delete finished runs past their retention.")
        prune.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")
        prune.add_argument("--batch-size", type=int, default=retention.BATCH_SIZE)
        summary = commands.add_parser("stats", help="Counts by status, queues and workers.")
        summary.add_argument("--since", default="24h", help="Window for the counts (24h).")
        commands.add_parser("healthcheck", help="Database, Redis, broker and workers.")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, f"do_{options['subcommand']}")
        handler(options)

    def _filter(self, options: dict[str, Any]) -> operations.RunFilter:
        try:
            return operations.RunFilter.from_params({k: options.get(k) for k in FILTERS})
        except operations.BadFilter as exc:
            raise CommandError(str(exc)) from None

    def _run(self, run_id: str) -> Run:
        try:
            return get_run(run_id)
        except RunNotFound:
            raise CommandError(f"No run {run_id}.") from None

    def do_list(self, options: dict[str, Any]) -> None:
        rows = self._filter(options).queryset().order_by("-enqueued_at", "-id")
        for row in rows[: max(1, options["limit"])]:
            if options["json"]:
                self.stdout.write(json.dumps(self._row_json(row)))
                continue
            self.stdout.write(
                f"{row.id}  {row.status:<10} {_stamp(row.enqueued_at)}  {row.task}"
                + (f"  [{row.queue}]" if row.queue else "")
            )

    def _row_json(self, row: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "task": row.task,
            "status": row.status,
            "queue": row.queue,
            "enqueued_at": row.enqueued_at.isoformat(),
        }

    def do_show(self, options: dict[str, Any]) -> None:
        run = self._run(options["run_id"])
        if options["json"]:
            data = run.as_json()
            data["args"] = redact(run.args)
            data["kwargs"] = redact(run.kwargs)
            self.stdout.write(json.dumps(data, indent=2, default=str))
            return
        percent = run.progress.percent
        lines = [
            ("id", run.id),
            ("task", run.task),
            ("status", run.status.value),
            ("queue", run.queue or "-"),
            ("worker", run.worker or "-"),
            ("attempts", str(run.attempts)),
            ("progress", "-" if percent is None else f"{percent}% {run.progress.message}"),
            ("args", json.dumps(redact(run.args))),
            ("kwargs", json.dumps(redact(run.kwargs))),
            ("enqueued", _stamp(run.enqueued_at)),
            ("started", _stamp(run.started_at)),
            ("finished", _stamp(run.finished_at)),
            ("next attempt", _stamp(run.next_attempt_at)),
        ]
        if run.retry_of:
            lines.append(("retry of", run.retry_of))
        if run.root_id and run.root_id != run.id:
            lines.append(("root", run.root_id))
        if run.status == "SUCCESSFUL":
            lines.append(("result", json.dumps(run.result, default=str)))
        if run.error is not None:
            lines.append(("error", f"{run.error.type}: {run.error.message}"))
        for label, value in lines:
            self.stdout.write(f"{label + ':':<14}{value}")
        if run.error is not None and run.error.traceback:
            self.stdout.write(run.error.traceback.rstrip())

    def do_watch(self, options: dict[str, Any]) -> None:
        run = self._run(options["run_id"])
        final = watch(run, out=self.stdout, timeout=options["timeout"])
        if final is None:
            return  # interrupted or timed out: the run goes on
        if final.status != "SUCCESSFUL":
            raise CommandError(f"Run {final.id} ended {final.status}.", returncode=1)

    def _actor(self) -> str:
        try:
            return f"cli:{getpass.getuser()}"
        except (KeyError, OSError):
            return "cli"

    def _act(self, action: operations.BulkAction, options: dict[str, Any]) -> None:
        ids: list[str] = options["run_ids"]
        run_filter = self._filter(options)
        if ids and not run_filter.is_empty:
            raise CommandError("Give run ids or filters, not both.")
        if not ids:
            self._act_on_filter(action, run_filter, options)
            return
        failed = 0
        for run_id in ids:
            try:
                if action == "retry":
                    new = actions.retry(run_id, actor=self._actor(), address=None)
                    self.stdout.write(f"{run_id}  retried as {new.id}")
                else:
                    after = actions.cancel(
                        run_id, actor=self._actor(), address=None, terminate=options["terminate"]
                    )
                    self.stdout.write(f"{run_id}  {after.status}")
            except (actions.ActionRefused, RunNotFound) as exc:
                failed += 1
                message = f"No run {run_id}." if isinstance(exc, RunNotFound) else str(exc)
                self.stderr.write(f"{run_id}  refused: {message}")
        if failed:
            raise CommandError(f"{failed} of {len(ids)} runs refused.")

    def _act_on_filter(
        self, action: operations.BulkAction, run_filter: operations.RunFilter, options: Any
    ) -> None:
        if run_filter.is_empty:
            raise CommandError(f"Give run ids, or filters (--task, --since, ...) to {action} all.")
        count = operations.bulk_count(run_filter, action, options["limit"])
        if not options["yes"]:
            self.stdout.write(f"{count} runs match; add --yes to {action} them.")
            return
        outcome = operations.bulk_apply(
            run_filter, action, actor=self._actor(), address=None, limit=options["limit"]
        )
        self.stdout.write(
            f"{action}: {len(outcome.done)} done, {len(outcome.refused)} refused"
            + (
                f", {outcome.skipped_already_retried} already retried"
                if outcome.skipped_already_retried
                else ""
            )
        )

    def do_retry(self, options: dict[str, Any]) -> None:
        self._act("retry", options)

    def do_replay(self, options: dict[str, Any]) -> None:
        run = self._run(options["run_id"])
        try:
            args, kwargs = replay.parse_arguments(options["args_json"], options["kwargs_json"])
            new = replay.replay(run.id, args, kwargs, actor=self._actor(), address=None)
        except actions.ActionRefused as exc:
            raise CommandError(f"Replay of {run.id} refused: {exc}") from None
        self.stdout.write(new.id)

    def do_cancel(self, options: dict[str, Any]) -> None:
        self._act("cancel", options)

    def do_prune(self, options: dict[str, Any]) -> None:
        def progress(label: str, deleted: int) -> None:
            self.stdout.write(f"  {label}: deleted {deleted}")

        report = retention.prune(
            batch_size=max(1, options["batch_size"]),
            dry_run=options["dry_run"],
            on_batch=None if options["dry_run"] else progress,
        )
        verb = "would delete" if report.dry_run else "deleted"
        for label, count in report.deleted.items():
            self.stdout.write(f"{label}: {verb} {count}")
        self.stdout.write(f"total: {verb} {report.total}")

    def do_stats(self, options: dict[str, Any]) -> None:
        try:
            since = operations.parse_moment(options["since"])
        except operations.BadFilter as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Runs enqueued since {_stamp(since)}:")
        for item in stats.status_counts(since):
            self.stdout.write(f"  {item.status.value:<11}{item.label:>10}")
        from tasktrail.workers import list_workers

        workers = list_workers()
        self.stdout.write("Queues:")
        for queue in stats.queue_overview(workers):
            age = queue.oldest_age()
            depth = "?" if queue.depth is None else str(queue.depth)
            oldest = "-" if age is None else f"{age:.0f}s"
            self.stdout.write(f"  {queue.name:<30} depth {depth:>7}  oldest READY {oldest}")
        self.stdout.write("Workers:")
        for worker in workers:
            state = "online" if worker.online else "offline"
            self.stdout.write(
                f"  {worker.hostname:<30} {state:<8} {len(worker.active_runs)}"
                f"/{worker.concurrency} busy"
            )

    def do_healthcheck(self, options: dict[str, Any]) -> None:
        results = operations.healthcheck()
        if results[0].ok:  # the database answers: does it hold tasktrail's tables?
            results.insert(1, _migrations())
        for check in results:
            self.stdout.write(check.line())
        down = [c.name for c in results if not c.ok]
        if down:
            raise CommandError(f"down: {', '.join(down)}", returncode=1)


def _migrations() -> operations.Check:
    try:
        missing = checks.unapplied_migrations()
    except Exception as exc:
        return operations.Check(name="migrations", ok=False, detail=f"{type(exc).__name__}: {exc}")
    if missing:
        detail = f"{checks.describe_unapplied(missing)}: {checks.MIGRATE_HINT}"
        return operations.Check(name="migrations", ok=False, detail=detail)
    return operations.Check(name="migrations", ok=True, detail="all applied")
