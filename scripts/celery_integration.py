"""Celery's own integration tests, plain and with tasktrail connected; Celery referees.

    uv run python scripts/celery_integration.py            # test_tasks.py + test_canvas.py
    uv run python scripts/celery_integration.py --subset   # CI's selection, a few minutes

1. Downloads the sdist of the installed Celery version from PyPI (cached in
   ``.cache/celery-sdist/``) and unpacks its ``t/`` tests into a temporary directory.
2. Runs the same selection twice, side by side (``--one-at-a-time``: one after the
   other), each pass with a Redis server of its own on a free port, configured as
   Celery's own CI runs these tests (broker and results in database 0, where the tests
   also keep keys of their own and some assert on server-wide pub/sub channels), and
   Celery's embedded prefork worker (``celery.contrib.testing``):
   - plain: Celery's Redis broker and Redis result backend;
   - with tasktrail connected: Django set up with
     ``scripts/celery_integration_settings.py`` and the result backend
     ``tasktrail.backend.TasktrailBackend`` (see ``scripts/celery_integration_plugin.py``).
3. Compares the outcomes test by test, then audits (``scripts/celery_integration_audit.py``):
   after ``flusher.flush_all()``, every run tasktrail recorded against the state Celery's
   stock ``RedisBackend`` reads for the id, and every id Celery stored for a tracked task.

Exits 1 on a test that passes plain but not with tasktrail, a run left READY, RUNNING or
RETRYING that Celery has settled, or any other disagreement; 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import celery_integration_audit as audit

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
CACHE = ROOT / ".cache" / "celery-sdist"

# As Celery's own CI runs them (tox.ini, the "redis" factor): broker and results in
# database 0, where the tests' helpers also keep their keys (some read the results'
# keys there); worker logs at INFO, which the log-assertion tests need.
REDIS_DB = 0
WORKER_LOGLEVEL = "INFO"
TASKTRAIL_BACKEND = "tasktrail.backend.TasktrailBackend"
FULL = ["t/integration/test_tasks.py", "t/integration/test_canvas.py"]
# CI's selection, about a minute per pass: plain tasks, failures, retries, Reject both
# ways, ignore_result, update_state with a custom state, revokes, replace (with a task, a
# chain, a group), chains with a failing step, chords (a failing header, replaced
# members), groups, links and error callbacks, starmap, stamping.
SUBSET_TASKS = """
test_tasks::test_simple_call
test_tasks::test_basic_task
test_tasks::test_fail
test_tasks::test_wrong_arguments
test_tasks::test_unicode_task
test_tasks::test_ignore_result
test_tasks::test_reject_with_requeue_redelivers_and_succeeds
test_tasks::test_reject_without_requeue_stores_failure
test_tasks::test_task_retried_once
test_tasks::test_retry_switches_from_kwargs_to_args
test_tasks::test_retry_with_unpickleable_exception
test_tasks::test_fail_with_unpickleable_exception
test_tasks::test_pydantic_model_arguments
test_tasks::test_revoked_by_headers_simple_canvas
test_tasks::test_revoke_keeps_state_of_task_started_elsewhere[PROGRESS]
test_class_based_tasks::test_class_based_task_retried
test_apply_tasks::test_apply_single_task_ids
test_task_redis_result_backend::test_ignoring_result_no_subscriptions
test_task_redis_result_backend::test_retry_preserves_ignore_result_true
test_task_redis_result_backend::test_asyncresult_forget_cancels_subscription
test_task_replacement::test_replaced_task_nesting_increments[3]
test_task_replacement::test_replaced_task_nesting_chain
"""
SUBSET_CANVAS = """
test_chain::test_simple_chain
test_chain::test_complex_chain
test_chain::test_chain_on_error
test_chain::test_chain_child_replaced_with_chain_middle
test_chain::test_chain_replaced_with_a_chain_and_an_error_callback
test_chain::test_replace_with_chain_that_contains_a_group
test_chain::test_second_order_replace
test_chain::test_header_failure_fails_the_chords_after_it[1]
test_group::test_ready_with_exception
test_group::test_task_replace_with_group_preserves_group_order
test_group::test_nested_group_chord_counting_mixed
test_chord::test_add_chord_to_chord
test_chord::test_empty_header_chord
test_chord::test_parent_ids
test_chord::test_priority
test_chord::test_chord_header_task_replaced_with_chain
test_chord::test_error_propagates_to_chord_from_simple
test_chord::test_chord_error_propagation_with_different_body_types[body is a chain]
test_link_error::test_link_error_using_signature
test_link_error::test_link_error_callback_retries
test_xmap_xstarmap::test_starmap_in_a_group_and_a_chain
test_stamping_mechanism::test_stamps_remain_on_task_retry
test_result_set::test_join_native_timeout_zero_gives_up_on_pending_results
"""
SUBSET = [
    *(f"t/integration/test_tasks.py::{name}" for name in SUBSET_TASKS.strip().splitlines()),
    *(f"t/integration/test_canvas.py::{name}" for name in SUBSET_CANVAS.strip().splitlines()),
]
# Packages Celery's integration tests import or use that tasktrail's environment lacks,
# at the versions Celery's own requirement files pin.
EXTRA_PACKAGES = {
    "pydantic": "requirements/extras/pydantic.txt",
    "pytest-rerunfailures": "requirements/test.txt",
}
PER_TEST_TIMEOUT = 300  # seconds; Celery's own flaky marker allows as much
# Celery's tests in Celery's pytest configuration, in file order, with Celery's pytest
# plugin (its fixtures) and ours; none of tasktrail's own (random order, pytest-django).
PLUGINS = ["no:randomly", "no:django", "no:cacheprovider", "celery.contrib.pytest",
           "celery_integration_plugin"]  # fmt: skip
PYTEST_OPTIONS = [*(f"-p{name}" for name in PLUGINS), "-q", "-rfEs", "--no-header",
                  f"--timeout={PER_TEST_TIMEOUT}"]  # fmt: skip


class CannotRun(Exception):
    """Something outside the tests is missing (a download, redis-server, uv)."""


def say(message: str = "") -> None:
    print(message, flush=True)


# -- the tests ---------------------------------------------------------------------------


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise CannotRun("uv is not on PATH; install it (pip install uv) and run again.")
    return found


def sdist(version: str, cache: Path) -> Path:
    """The sdist of Celery ``version``, downloaded from PyPI once per cache."""
    path = cache / f"celery-{version}.tar.gz"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    say(f"downloading the sdist of celery {version} into {cache.relative_to(ROOT)}/")
    words = (
        f"tool run --from pip pip download --quiet --no-deps --no-binary :all: celery=={version}"
    )
    command = [uv(), *words.split(), "-d", str(cache)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode or not path.exists():
        raise CannotRun(f"pip download of celery=={version} failed:\n{done.stderr[-2000:]}")
    return path


def unpack(archive: Path, into: Path) -> Path:
    """Celery's ``t/`` package (``t/integration`` and the helpers it imports), its pytest
    configuration and its requirement files; not its ``celery/`` source: the tests run
    against the installed Celery."""
    top = archive.name.removesuffix(".tar.gz")
    wanted = ("t/", "pyproject.toml", "requirements/")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.removeprefix(f"{top}/").startswith(wanted)]
        tar.extractall(into, members=members, filter="data")
    tests = into / top
    if not (tests / "t" / "integration" / "conftest.py").exists():
        raise CannotRun(f"{archive.name} has no t/integration/conftest.py")
    return tests


def pins(tests: Path) -> list[str]:
    """``--with`` requirements for the extra packages, pinned as Celery pins them."""
    out = []
    for name, relative in EXTRA_PACKAGES.items():
        spec = name
        for line in (tests / relative).read_text().splitlines():
            if line.strip().lower().startswith(name + "=="):
                spec = line.split(";")[0].strip()
        out.append(spec)
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def redis_server(workdir: Path, name: str) -> Iterator[int]:
    """A Redis server of this pass's own, stopped on the way out."""
    binary = shutil.which("redis-server")
    if not binary:
        raise CannotRun("redis-server is not on PATH (apt-get install redis-server).")
    port = free_port()
    options = {
        "--port": str(port),
        "--bind": "127.0.0.1",
        "--save": "",
        "--appendonly": "no",
        "--dir": str(workdir),
        "--logfile": str(workdir / f"redis-{name}.log"),
    }
    server = subprocess.Popen(
        [binary, *(word for pair in options.items() for word in pair)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise CannotRun(f"redis-server on port {port} did not answer: see redis-{name}.log")
        client.close()
        yield port
    finally:
        stop(server)


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """End a process this script started, and its process group when it leads one."""
    if process.poll() is not None:
        return
    kill = os.killpg if os.getpgid(process.pid) == process.pid else os.kill
    kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        kill(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Pass:
    name: str
    seconds: float = 0.0
    exitstatus: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)
    reruns: dict[str, int] = field(default_factory=dict)
    published: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    backend: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)

    def summary(self) -> str:
        kinds = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
        parts = [f"{self.count(kind)} {kind}" for kind in kinds if self.count(kind)]
        reruns = sum(self.reruns.values())
        return ", ".join(parts + ([f"{reruns} reruns"] if reruns else [])) or "no tests"


@dataclass
class Running:
    """A pass under way: its pytest process, its log and its progress file."""

    name: str
    process: subprocess.Popen[bytes]
    workdir: Path
    started: float

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def progress(self) -> str:
        path = self.workdir / f"progress-{self.name}"
        lines = path.read_text().splitlines() if path.exists() else []
        total = next((line.split()[1] for line in lines if line.startswith("collected ")), "?")
        last = {}  # nodeid -> its last outcome (a rerun test has two lines)
        for line in lines:
            outcome, _, nodeid = line.partition(" ")
            if outcome != "collected":
                last[nodeid] = outcome
        failed = sum(1 for outcome in last.values() if outcome in ("failed", "error"))
        done = len(last)
        return f"{self.name} {done}/{total}" + (f" ({failed} failed)" if failed else "")


def start_pass(
    name: str,
    tests: Path,
    workdir: Path,
    selection: list[str],
    env: dict[str, str],
    extras: list[str],
) -> Running:
    command = [uv(), "run", "--project", str(ROOT)]
    for spec in extras:
        command += ["--with", spec]
    config = ["-c", str(tests / "pyproject.toml"), "--rootdir", str(tests)]
    command += ["python", "-m", "pytest", *config, *PYTEST_OPTIONS, *selection]
    env = {
        **env,
        "CELERY_INTEGRATION_OUTCOMES": str(workdir / f"outcomes-{name}.json"),
        "CELERY_INTEGRATION_PROGRESS": str(workdir / f"progress-{name}"),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(tests), str(SCRIPTS), env.get("PYTHONPATH")])
        ),
    }
    say(f"{name} pass started; log: {workdir / name}.log")
    with (workdir / f"{name}.log").open("wb") as log:
        # A session of its own: stopping the pass stops its worker's pool processes too.
        process = subprocess.Popen(
            command, cwd=tests, env=env, stdout=log, stderr=log, start_new_session=True
        )
    return Running(name, process, workdir, time.monotonic())


def wait_passes(running: list[Running], every: float = 60.0) -> dict[str, Pass]:
    """Wait for the passes, showing their progress every ``every`` seconds."""
    done: dict[str, Pass] = {}
    shown = time.monotonic()
    while len(done) < len(running):
        for item in running:
            if item.name not in done and item.process.poll() is not None:
                done[item.name] = finish_pass(item)
        if time.monotonic() - shown >= every and len(done) < len(running):
            shown = time.monotonic()
            minutes = (shown - min(item.started for item in running)) / 60
            say(f"  {minutes:.0f} min: " + ", ".join(item.progress() for item in running))
        time.sleep(0.5)
    return done


def finish_pass(item: Running) -> Pass:
    seconds = time.monotonic() - item.started
    outcomes = item.workdir / f"outcomes-{item.name}.json"
    if not outcomes.exists():
        tail = item.log.read_text(errors="replace")[-3000:]
        raise CannotRun(
            f"the {item.name} pass wrote no outcomes "
            f"(pytest exit {item.process.returncode}):\n{tail}"
        )
    data = json.loads(outcomes.read_text())
    if data["exitstatus"] not in (0, 1) or not data["outcomes"]:  # 1: some test failed
        tail = item.log.read_text(errors="replace")[-3000:]
        raise CannotRun(
            f"the {item.name} pass ran no tests (pytest exit {data['exitstatus']}):\n{tail}"
        )
    result = Pass(item.name, seconds=seconds, exitstatus=data["exitstatus"])
    result.outcomes, result.reruns = data["outcomes"], data["reruns"]
    result.published, result.failures = data["published"], data["failures"]
    result.backend = data["backend"]
    say(f"{item.name} pass: {result.summary()} in {result.seconds:.0f} s")
    return result


# -- the comparison ----------------------------------------------------------------------


def compare(plain: Pass, connected: Pass) -> tuple[list[tuple[str, str]], list[str]]:
    """Regressions (passed plain, not with tasktrail) and other differences."""
    regressions: list[tuple[str, str]] = []
    notes: list[str] = []
    for nodeid in sorted(set(plain.outcomes) | set(connected.outcomes)):
        before = plain.outcomes.get(nodeid, "not run")
        after = connected.outcomes.get(nodeid, "not run")
        line = f"{nodeid}: plain {before}, with tasktrail {after}"
        if before != after and before in ("passed", "xfailed"):
            regressions.append((nodeid, line))
        elif before != after:
            notes.append(line)
    for nodeid in sorted(set(plain.reruns) | set(connected.reruns)):
        before, after = plain.reruns.get(nodeid, 0), connected.reruns.get(nodeid, 0)
        if before != after:
            notes.append(f"{nodeid}: rerun {before}x plain, {after}x with tasktrail")
    return regressions, notes


# -- the script --------------------------------------------------------------------------


def celery_env(port: int) -> dict[str, str]:
    """What Celery's conftest and tasks read: broker, result backend, their own Redis."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_SETTINGS_MODULE" and not key.startswith("CELERY_INTEGRATION_")
    }
    url = f"redis://127.0.0.1:{port}/{REDIS_DB}"
    return {
        "WORKER_LOGLEVEL": WORKER_LOGLEVEL,
        **env,
        "TEST_BROKER": url,
        "TEST_BACKEND": url,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(port),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", action="store_true", help="CI's selection (a few minutes)")
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="run the passes one after the other (default: side by side, each "
        "with its own Redis; the tests mostly wait, so this halves the time)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the sdist is kept")
    parser.add_argument("tests", nargs="*", help="node ids or paths under t/integration")
    args = parser.parse_args(argv)
    selection = args.tests or (SUBSET if args.subset else FULL)

    import celery

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="celery-integration-"))
    running: list[Running] = []
    try:
        tests = unpack(sdist(celery.__version__, args.cache), workdir)
        extras = pins(tests)
        with (
            redis_server(workdir, "plain") as plain_port,
            redis_server(workdir, "tasktrail") as tasktrail_port,
        ):
            plain_env = celery_env(plain_port)
            django_env = {
                "DJANGO_SETTINGS_MODULE": "celery_integration_settings",
                "CELERY_INTEGRATION_DB": str(workdir / "tasktrail.sqlite3"),
                "CELERY_INTEGRATION_REDIS_URL": celery_env(tasktrail_port)["TEST_BACKEND"],
                "CELERY_INTEGRATION_PREFIX": f"tt-celery-it-{uuid.uuid4().hex[:8]}",
            }
            tasktrail_env = {
                **celery_env(tasktrail_port),
                **django_env,
                "CELERY_INTEGRATION_TASKTRAIL": "1",
            }
            audit.setup_django(django_env)
            passes: dict[str, Pass] = {}
            for name, env in (("plain", plain_env), ("tasktrail", tasktrail_env)):
                running.append(start_pass(name, tests, workdir, selection, env, extras))
                if args.one_at_a_time:
                    passes.update(wait_passes(running[-1:]))
            passes.update(wait_passes([item for item in running if item.name not in passes]))
            plain, connected = passes["plain"], passes["tasktrail"]
            if connected.backend != TASKTRAIL_BACKEND:
                raise CannotRun(
                    f"the tasktrail pass ran with {connected.backend or 'no worker'}, "
                    f"not {TASKTRAIL_BACKEND}"
                )
            report = audit.run(django_env["CELERY_INTEGRATION_REDIS_URL"], connected.published)
    except CannotRun as exc:
        say(f"cannot run: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted: stopping the passes")
        return 130
    finally:
        for item in running:
            stop(item.process)
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    regressions, notes = compare(plain, connected)
    say(
        f"\nCelery {celery.__version__}, {len(plain.outcomes)} tests, "
        f"{'one pass at a time' if args.one_at_a_time else 'both passes side by side'}"
    )
    say(f"plain:     {plain.summary()}; wall time {plain.seconds:.0f} s ({plain.backend})")
    say(
        f"tasktrail: {connected.summary()}; wall time {connected.seconds:.0f} s "
        f"({connected.backend})"
    )
    say(f"regressions (passed plain, not with tasktrail): {len(regressions)}")
    for nodeid, line in regressions:
        say(f"  {line}")
        for text in connected.failures.get(nodeid, "").splitlines()[-30:]:
            say(f"    | {text}")
    say(f"other differences: {len(notes)}")
    for line in notes:
        say(f"  {line}")
    audit.show(report)
    failed = bool(regressions) or report.failures > 0
    say(
        f"\n{'FAILED' if failed else 'OK'}: {len(regressions)} regressions, "
        f"{len(report.unsettled)} left unfinished, {len(report.mismatched)} mismatched, "
        f"{len(report.unknown)} unknown to tasktrail, {len(report.row_disagrees)} rows behind; "
        f"total wall time {time.monotonic() - started:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
