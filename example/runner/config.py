"""Where everything lives for one run of ``python -m example``, from flags and environment."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .services import ROOT


@dataclass
class Config:
    smoke: bool
    port: int
    data_dir: Path
    temporary: bool
    redis_url: str = ""
    broker_url: str = ""
    database_url: str = ""
    key_prefix: str = "tasktrail-example"
    queue: str = "example"
    private_redis: bool = False

    @classmethod
    def create(cls, *, smoke: bool, port: int, data_dir: str | None) -> Config:
        if data_dir:
            path, temporary = Path(data_dir).resolve(), False
        elif smoke:
            path, temporary = Path(tempfile.mkdtemp(prefix="tasktrail-smoke-")), True
        else:
            path, temporary = ROOT / "example" / ".data", False
        path.mkdir(parents=True, exist_ok=True)
        config = cls(smoke=smoke, port=port, data_dir=path, temporary=temporary)
        if smoke:
            # A shared Redis may hold other runs: keep this one's keys and queue apart.
            suffix = uuid.uuid4().hex[:8]
            config.key_prefix = f"tasktrail-smoke-{suffix}"
            config.queue = f"example-smoke-{suffix}"
        config.database_url = os.environ.get("DATABASE_URL", "")
        config.broker_url = os.environ.get("BROKER_URL", "")
        return config

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment every child gets (settings.py reads it)."""
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "example.project.settings",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
                "PYTHONUNBUFFERED": "1",
                "EXAMPLE_DATA_DIR": str(self.data_dir),
                "EXAMPLE_BASE_URL": self.base_url,
                "EXAMPLE_KEY_PREFIX": self.key_prefix,
                "EXAMPLE_QUEUE": self.queue,
            }
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.broker_url:
            env["BROKER_URL"] = self.broker_url
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.smoke:
            # Let beat prove itself within the smoke: the low-stock alert every 5 s.
            env.setdefault("EXAMPLE_LOW_STOCK_EVERY", "5")
        return env

    def cleanup(self) -> None:
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def describe(self) -> dict[str, str]:
        def hide(url: str) -> str:
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            if parts.password:
                return url.replace(f":{parts.password}@", ":***@")
            return url

        return {
            "web": self.base_url,
            "dashboard": f"{self.base_url}/ops/ (staff: demo / demo)",
            "metrics": f"{self.base_url}/metrics",
            "database": hide(self.database_url) or f"sqlite {self.data_dir / 'db.sqlite3'}",
            "redis": self.redis_url + (" (private valkey)" if self.private_redis else ""),
            "broker": hide(self.broker_url) or self.redis_url,
            "logs": str(self.data_dir),
        }
