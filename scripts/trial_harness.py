"""What the trials share: a key prefix, SQLite file and settings of their own, worker
nodes started with the acceptance tier's machinery, and clean-up of all of it.

A trial script calls :func:`configure` before it touches Django, starts nodes with
:class:`TrialWorkers` (the acceptance tier's ``Workers``, with the trial's settings,
extra environment per node and logs in the trial's directory), and leaves everything
to :func:`cleanup` in a ``finally``: the processes it started, its Redis keys (tasktrail's
and the broker's), its RabbitMQ queues and Celery's result keys of its task ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.acceptance.conftest import HEARTBEAT, LOST_AFTER, Worker, Workers  # noqa: E402

__all__ = [
    "HEARTBEAT", "LOST_AFTER", "SETTLER_OFF", "STOCK_RESULT_BACKEND", "Trial", "TrialWorkers",
    "Worker", "cleanup", "configure", "consume", "finish", "messages_left", "stop_on_sigterm",
    "wait_until",
]  # fmt: skip

# A Redis database of the trials' own: kombu keeps one ``unacked`` hash per database,
# and a control run's short visibility timeout restores every message in it.
REDIS_BROKER = "redis://127.0.0.1:6379/14"
AMQP_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
STOCK_RESULT_BACKEND = "redis://127.0.0.1:6379/9"  # Celery's own, for control runs
SETTLER_OFF = 1e9  # LOST_AFTER of a control run: no worker is ever "lost"


@dataclass
class Trial:
    """Where one trial keeps its state: prefix, directory, broker, timing."""

    name: str
    prefix: str
    directory: Path
    broker: str
    lost_after: float
    heartbeat: float
    broker_keyprefix: bool

    @property
    def broker_key_prefix(self) -> str:
        return f"{self.prefix}:broker:" if self.broker_keyprefix else ""

    @property
    def redis_broker(self) -> bool:
        return self.broker.startswith("redis")


def broker_url(name: str) -> str:
    return {"redis": REDIS_BROKER, "amqp": AMQP_BROKER}.get(name, name)


def configure(
    name: str,
    broker: str,
    *,
    result_backend: str | None = None,
    visibility_timeout: float | None = None,
    lost_after: float = LOST_AFTER,
    heartbeat: float = HEARTBEAT,
    broker_keyprefix: bool = False,
) -> Trial:
    """Choose a prefix and a directory, set the environment every process of the
    trial reads, set Django up and migrate the trial's own SQLite file."""
    prefix = f"tt-{name}-{uuid.uuid4().hex[:8]}"
    directory = Path(tempfile.mkdtemp(prefix=f"tasktrail-{name}-"))
    env = {
        "DJANGO_SETTINGS_MODULE": "scripts.trial_settings",
        "TASKTRAIL_TEST_PREFIX": prefix,  # never a calling test session's prefix
        "TRIAL_DB": str(directory / "trial.sqlite3"),
        "TRIAL_BROKER": broker_url(broker),
        "TASKTRAIL_ACC_HEARTBEAT": str(heartbeat),
        "TASKTRAIL_ACC_LOST_AFTER": str(lost_after),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "TRIAL_BROKER_KEYPREFIX": "1" if broker_keyprefix else "",
    }
    os.environ.update(env)
    os.environ.pop("TRIAL_VISIBILITY_TIMEOUT", None)
    os.environ.pop("TRIAL_RESULT_BACKEND", None)
    if visibility_timeout is not None:
        os.environ["TRIAL_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
    if result_backend is not None:
        os.environ["TRIAL_RESULT_BACKEND"] = result_backend

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    import tests.acceptance.celery_app  # noqa: F401  (publishing needs the configured app)

    return Trial(name, prefix, directory, broker_url(broker), lost_after, heartbeat,
                 broker_keyprefix)  # fmt: skip


class TrialWorkers(Workers):
    """``celery worker`` nodes of one trial, each in its own process group, with the
    trial's settings, optional extra environment (``LD_PRELOAD`` for a skewed clock)
    and a log file in the trial's directory."""

    def __init__(self, trial: Trial) -> None:
        super().__init__()
        self.trial = trial

    def start(  # type: ignore[override]
        self,
        tag: str,
        *,
        queues: list[str],
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Worker:
        name = f"{tag}-{uuid.uuid4().hex[:6]}@{self.trial.name}"
        log = self.trial.directory / f"worker-{tag}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "tests.acceptance.celery_app",
                    "worker", "-P", "prefork", "-c", str(concurrency), "-O", "fair",
                    "-l", "warning", "-n", name, "-Q", ",".join(queues),
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                ],
                cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        worker = Worker(name, queues, process, log)
        self.started.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def stop_all(self) -> None:
        """Warm shutdown (each node's flusher writes what it holds); a node still busy
        after 5 s (a held execution, after an interrupted trial) is killed whole."""
        for worker in self.started:
            worker.stop(grace=5.0)


def consume(worker: Worker, queues: Iterable[str], *, start: bool = True) -> None:
    """Make a running node start (or stop) consuming ``queues`` (Celery remote control)."""
    from celery import current_app

    for queue in queues:
        command = current_app.control.add_consumer if start else current_app.control.cancel_consumer
        replies = command(queue, destination=[worker.hostname], reply=True, timeout=10)
        if not replies and start:
            raise RuntimeError(f"{worker.hostname} did not answer add_consumer({queue})")


def wait_until(probe: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """Poll ``probe`` until it is true; False (not an error) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def stop_on_sigterm() -> None:
    """SIGTERM and SIGHUP end the trial like Ctrl-C: through its ``finally``."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def _unacked(trial: Trial, channel: Any) -> dict[str, str]:
    """kombu's unacknowledged Redis messages of this trial: delivery tag -> queue."""
    mine: dict[str, str] = {}
    raw: Any = channel.client.hgetall(trial.broker_key_prefix + channel.qos.unacked_key)
    for tag, value in raw.items():
        try:
            _, _, queue = json.loads(value)
        except (ValueError, TypeError):
            continue
        if trial.prefix in str(queue):
            mine[tag.decode() if isinstance(tag, bytes) else str(tag)] = str(queue)
    return mine


def messages_left(trial: Trial, queues: Iterable[str]) -> dict[str, int]:
    """Messages the broker still holds for ``queues`` (ready, and on Redis also
    delivered but never acknowledged): each one is an execution still to come."""
    from celery import current_app

    left: dict[str, int] = {}
    with current_app.connection_for_write() as connection:
        channel: Any = connection.default_channel
        for queue in queues:
            if trial.redis_broker:
                count = int(channel.client.llen(queue))
            else:
                try:
                    count = int(channel.queue_declare(queue, passive=True).message_count)
                except Exception:  # a queue never declared holds nothing
                    channel = connection.channel()
                    count = 0
            if count:
                left[queue] = count
        if trial.redis_broker and (unacked := len(_unacked(trial, channel))):
            left["(unacknowledged)"] = unacked
    return left


def finish(trial: Trial, *, failed: bool) -> None:
    """Keep the trial's directory (worker logs, SQLite file) only when it failed (or
    when asked to)."""
    if failed:
        print(f"worker logs and database kept in {trial.directory}")
    else:
        shutil.rmtree(trial.directory, ignore_errors=True)


def cleanup(
    trial: Trial, workers: TrialWorkers, queues: Iterable[str], task_ids: Iterable[str]
) -> None:
    """Stop every node, then delete what the trial left in Redis and RabbitMQ."""
    workers.stop_all()
    import redis
    from celery import current_app
    from django.conf import settings

    client = redis.Redis.from_url(str(settings.TASKTRAIL["REDIS_URL"]))
    for key in client.scan_iter(f"{trial.prefix}*", count=1000):
        client.delete(key)
    ids = list(task_ids)
    stock = redis.Redis.from_url(STOCK_RESULT_BACKEND)
    for start in range(0, len(ids), 500):
        for store in (client, stock):
            store.delete(*(f"celery-task-meta-{i}" for i in ids[start : start + 500]))
    with current_app.connection_for_write() as connection:
        if trial.redis_broker:
            channel: Any = connection.default_channel
            for tag in _unacked(trial, channel):  # kombu prefixes HDEL and ZREM itself
                channel.client.hdel(channel.qos.unacked_key, tag)
                channel.client.zrem(channel.qos.unacked_index_key, tag)
            broker = redis.Redis.from_url(trial.broker)
            for key in broker.scan_iter(f"*{trial.prefix}*", count=1000):
                broker.delete(key)
            return
        for queue in queues:
            with contextlib.suppress(Exception):
                channel = connection.channel()
                channel.queue_delete(queue)
                channel.exchange_delete(queue)
                channel.close()
