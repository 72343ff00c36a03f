"""What every benchmark script shares: arguments, child processes, clients, statistics.

Nothing here imports Django: the scripts are orchestrators that start workers and
servers as subprocesses with ``bench.settings`` chosen by environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
# BENCH_REDIS (host and port only) moves every benchmark to another Redis: a private
# server keeps another job's commands out of INFO commandstats and CPU figures.
_REDIS = urlsplit(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"))
REDIS_HOST, REDIS_PORT = _REDIS.hostname or "127.0.0.1", _REDIS.port or 6379
BENCH_DBS = (10, 11, 12, 13)


# --------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dry-run", action="store_true", help="check imports and config, then exit")
    p.add_argument("--quick", action="store_true", help="a reduced run (seconds, not minutes)")
    p.add_argument("--repeat", type=int, default=None, help="runs per measurement (3; quick: 1)")
    p.add_argument("--json", type=Path, default=None, help="where to write the figures")
    return p


def repeats(args: argparse.Namespace) -> int:
    return int(args.repeat or (1 if args.quick else 3))


def dry_run_checks(*modules: str, settings_env: dict[str, str] | None = None) -> None:
    """Import what a script needs and load ``bench.settings`` (in a subprocess, so the
    settings module can be loaded in more than one mode)."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    env = settings_env or child_env(mode="tasktrail", prefix="ttb-dry")
    code = (
        "import django; django.setup(); "
        "import bench.tasks, bench.urls, bench.seeds_views, bench.celery_app"
    )
    subprocess.run([PY, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


# --------------------------------------------------------------------------- processes


def unique_prefix(name: str) -> str:
    return f"ttb-{name}-{uuid.uuid4().hex[:6]}"


def child_env(*, mode: str, prefix: str, db: str = "sqlite", **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BENCH_MODE": mode,
            "BENCH_DB": db,
            "BENCH_PREFIX": prefix,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


_started: list[subprocess.Popen[bytes]] = []


def _stop_all() -> None:
    for process in reversed(_started):
        stop(process, grace=5)


def _on_signal(signum: int, frame: Any) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, _on_signal)


def spawn(command: Sequence[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so stopping it stops its children)."""
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{log}.log", "wb") as out:
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _started.append(process)
    return process


def stop(process: subprocess.Popen[Any], grace: float = 15.0, *, interrupt: bool = False) -> None:
    """Stop a child and its process group: SIGTERM (or SIGINT to the child alone, which
    lets pyinstrument write its report), then SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if interrupt:
                os.kill(process.pid, signal.SIGINT)
            else:
                os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (pool children)
    if process in _started:
        _started.remove(process)


def redis(db: int = 11) -> Any:
    import redis as redis_py

    return redis_py.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)


def start_worker(
    env: dict[str, str], *, concurrency: int = 2, name: str = "worker", timeout: float = 60
) -> subprocess.Popen[bytes]:
    """A prefork ``celery worker -c 2`` with the flags every benchmark uses."""
    prefix = env["BENCH_PREFIX"]
    process = spawn(
        [
            PY, "-m", "celery", "-A", "bench.celery_app", "worker", "-P", "prefork",
            "-c", str(concurrency), "-l", "warning", "-n", f"{prefix}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        env, f"{prefix}-{name}",
    )  # fmt: skip
    flag = f"{prefix}:worker-ready"
    deadline = time.monotonic() + timeout
    while not redis(13).get(flag):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"worker did not start; see {RESULTS}/{prefix}-{name}.log")
        time.sleep(0.1)
    return process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_stack() -> tuple[list[str], list[str]]:
    """The Python to run uvicorn with and its event loop and HTTP flags, from
    ``BENCH_SERVER``: ``h11`` (default: what the lock file has, pure Python) or
    ``uvloop`` (uvloop + httptools, as ``uvicorn[standard]`` installs them; added for
    the uvicorn process only, with ``uv run --with``, so the project's environment
    and the tests stay as locked)."""
    server = os.environ.get("BENCH_SERVER", "h11")
    if server == "h11":
        return [PY], ["--loop", "asyncio", "--http", "h11"]
    if server == "uvloop":
        python = ["uv", "run", "--with", "uvloop", "--with", "httptools", "python"]
        return python, ["--loop", "uvloop", "--http", "httptools"]
    raise SystemExit(f"BENCH_SERVER must be h11 or uvloop, not {server!r}")


def server_pid(process: subprocess.Popen[bytes]) -> int:
    """The uvicorn process itself (under ``BENCH_SERVER=uvloop``, ``uv run`` is its parent)."""
    pid = process.pid
    for _ in range(4):
        if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3]:
            return pid
        # A multi-threaded parent (uv) may start it from any of its threads.
        children = [
            child
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
        if not children:
            break
        pid = int(children[0])
    return pid


def start_uvicorn(
    env: dict[str, str], *, name: str = "web", backlog: int = 4096, profile: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """One uvicorn process (no reload, one worker) serving ``bench.asgi``; with
    ``profile``, under pyinstrument, which writes its text report there at exit."""
    port = free_port()
    python, stack = server_stack()
    runner = (
        [*python, "-m", "pyinstrument", "-o", str(profile), "-m"] if profile else [*python, "-m"]
    )
    process = spawn(
        [
            *runner, "uvicorn", "bench.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
            "--backlog", str(backlog), "--timeout-keep-alive", "60", *stack,
        ],
        env, f"{env['BENCH_PREFIX']}-{name}",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.1)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def django_call(env: dict[str, str], code: str, timeout: float = 300) -> Any:
    """Run ``code`` (which sets ``out``) in a Django-configured subprocess; return ``out``."""
    program = (
        "import django, json, sys; django.setup()\n"
        f"{code}\n"
        "sys.stdout.write('\\n@@' + json.dumps(out))\n"
    )
    done = subprocess.run(
        [PY, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        raise RuntimeError(f"django_call failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.rpartition("\n@@")[2])


def prepare_database(env: dict[str, str]) -> None:
    """Create (PostgreSQL) and migrate the benchmark database, and empty its tables."""
    if env.get("BENCH_DB") == "postgres":
        import psycopg

        name = env.get("BENCH_PG_NAME", "tasktrail_bench")
        port = env.get("PGPORT", "5432")
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
                c.execute(f'CREATE DATABASE "{name}"')
    RESULTS.mkdir(exist_ok=True)
    subprocess.run(
        [PY, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=300,
    )  # fmt: skip
    django_call(
        env,
        "from django.db import connection\n"
        "tables = [t for t in connection.introspection.table_names()\n"
        "          if t in ('tasktrail_taskrun', 'django_celery_results_taskresult')]\n"
        "with connection.cursor() as cur:\n"
        "    for t in tables: cur.execute(f'DELETE FROM {t}')\n"
        "out = tables",
    )


def cleanup_redis(prefix: str) -> None:
    for db in BENCH_DBS:
        client = redis(db)
        batch: list[bytes] = []
        for key in client.scan_iter(f"{prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)


# --------------------------------------------------------------------------- measuring


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss(pid: int) -> int:
    return rss_bytes(pid) + sum(rss_bytes(c) for c in descendants(pid))


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_by_command(*names: str) -> dict[str, float]:
    """CPU seconds of all live processes per command name (``postgres``, ``redis-server``)."""
    totals = dict.fromkeys(names, 0.0)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in totals:
                totals[comm] += cpu_seconds(int(entry.name))
    return totals


def _socket_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets that ``pid`` holds open."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].rpartition(":")[2], 16))
    return ports


def redis_connections(pid: int) -> int:
    """How many of Redis's clients (``CLIENT LIST``) are sockets of process ``pid``."""
    ports = _socket_ports(pid)
    listing: list[dict[str, Any]] = redis(0).client_list()
    return sum(1 for entry in listing if int(str(entry["addr"]).rpartition(":")[2]) in ports)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    k = (len(data) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return percentile(list(values), 50)


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(latencies_s),
        "p50_ms": round(percentile(latencies_s, 50) * 1000, 3),
        "p95_ms": round(percentile(latencies_s, 95) * 1000, 3),
        "p99_ms": round(percentile(latencies_s, 99) * 1000, 3),
        "max_ms": round(max(latencies_s) * 1000, 3) if latencies_s else math.nan,
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "commit": head + ("+dirty-src" if dirty else ""),
        "python": sys.version.split()[0],
        "server": os.environ.get("BENCH_SERVER", "h11"),
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def save(name: str, figures: dict[str, Any], path: Path | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    target = path or RESULTS / f"{name}.json"
    figures = {"benchmark": name, "machine": machine(), **figures}
    target.write_text(json.dumps(figures, indent=2))
    return target


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTTP clients


@dataclass
class Event:
    id: str
    kind: str
    data: str
    received: float


@dataclass
class SSEClient:
    """A minimal Server-Sent Events client on a raw asyncio socket (HTTP/1.1, chunked)."""

    port: int
    path: str
    host: str = "127.0.0.1"
    headers: dict[str, str] = field(default_factory=dict)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    _text: str = ""
    status: int = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Accept: text/event-stream\r\n{extra}\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        if b"chunked" not in head.lower():
            raise RuntimeError(f"expected a chunked stream, got {head[:200]!r}")

    async def events(self) -> Any:
        """Yield :class:`Event` s until the server ends the stream."""
        assert self.reader is not None
        reader = self.reader
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            now = time.time()
            self._text += chunk[:-2].decode()
            while "\n\n" in self._text:
                block, self._text = self._text.split("\n\n", 1)
                event = Event("", "message", "", now)
                data = []
                for line in block.split("\n"):
                    name, _, value = line.partition(": ")
                    if name == "id":
                        event.id = value
                    elif name == "event":
                        event.kind = value
                    elif name == "data":
                        data.append(value)
                if data:
                    event.data = "\n".join(data)
                    yield event

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def http_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """One keep-alive GET on an open connection (Content-Length responses only)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, body


async def load(
    port: int, path: str, *, concurrency: int, duration: float, warmup: float = 1.0
) -> dict[str, Any]:
    """``concurrency`` keep-alive clients GET ``path`` in a loop for ``duration`` seconds."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                status, _ = await http_get(reader, writer, path)
                t1 = time.perf_counter()
                if status != 200:
                    errors += 1
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / duration, 1),
        **summary_ms(latencies),
    }


# ------------------------------------------------------------------------ Redis Cluster

CLUSTER_PORTS = (27720, 27721, 27722, 27723, 27724, 27725)  # the tests use 27700-27705


@contextlib.contextmanager
def redis_cluster() -> Iterator[str]:
    """A local Redis Cluster (3 masters, 3 replicas, tests/redis_cluster.py) for the
    length of the block; yields tasktrail's URL for it."""
    import tempfile

    from tests.redis_cluster import RedisCluster

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as directory:
        cluster = RedisCluster(Path(directory), CLUSTER_PORTS)
        try:
            cluster.start()
            yield cluster.url
        finally:
            cluster.stop()
