"""A real Celery worker and beat: the embedded filesystem broker, and Redis when configured.

No broker server is involved: beat publishes the heartbeat task into files
under a temporary TMS_VAR_DIR, a worker process (thread pool, as `make run`
starts it) consumes them, and a message published from another process
carries its request id into the task's JSON log line.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import require_service

BASE_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _isolated_redis_url() -> str:
    """The configured Redis server, on a database of its own so no other test's worker takes our messages."""
    base = os.environ.get("REDIS_URL", "")
    if not base:
        return ""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/15", parts.query, parts.fragment))


def _env(tmp_path: Path, broker: str) -> dict[str, str]:
    extra = {}
    if broker == "redis":
        url = _isolated_redis_url()
        extra = {"REDIS_URL": url, "CELERY_BROKER_URL": url}
    return {
        **extra,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DJANGO_SETTINGS_MODULE": "tms_console.settings",
        "DEBUG": "1",
        "TMS_VAR_DIR": str(tmp_path / "var"),
        "CELERY_HEARTBEAT_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }


class Child:
    """A subprocess whose output lines are collected by a reader thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for_json(self, predicate: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if line.startswith("{"):
                record = json.loads(line)
                if predicate(record):
                    return record
        raise AssertionError("expected log line not seen; output was:\n" + "\n".join(self.seen[-60:]))

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


@pytest.mark.parametrize("broker", ["filesystem", pytest.param("redis", marks=pytest.mark.services)])
def test_worker_and_beat_deliver_tasks_over_the_broker(tmp_path: Path, broker: str) -> None:
    if broker == "redis":
        url = _isolated_redis_url()
        require_service("Redis", bool(url))
        import redis

        redis.Redis.from_url(url).flushdb()  # leftovers of an earlier run would be consumed first
    env = _env(tmp_path, broker)
    celery = str(BIN / "celery")
    worker = Child(
        [celery, "-A", "tms_console", "worker", "--pool=threads", "--concurrency=4", "--loglevel=INFO"],
        env,
    )
    beat = Child(
        [celery, "-A", "tms_console", "beat", "--loglevel=INFO", "-s", str(tmp_path / "beat-schedule")],
        env,
    )
    try:
        beat.wait_for_json(lambda r: "Sending due task tms_console.heartbeat" in r["msg"], timeout=60)
        # The heartbeat beat sent is executed by the worker process.
        worker.wait_for_json(lambda r: r["msg"] == "celery heartbeat", timeout=60)

        publish = (
            "import django; django.setup()\n"
            "from tms_console.logging import request_id_var, correlation_id_var\n"
            "request_id_var.set('req-embedded-1'); correlation_id_var.set('corr-embedded-1')\n"
            "from tms_console.celery import heartbeat\n"
            "heartbeat.delay()\n"
        )
        subprocess.run([sys.executable, "-c", publish], cwd=BASE_DIR, env=env, check=True, timeout=60)
        record = worker.wait_for_json(
            lambda r: r["msg"] == "celery heartbeat" and r.get("request_id") == "req-embedded-1", timeout=60
        )
        assert record["correlation_id"] == "corr-embedded-1"
        if broker == "filesystem":
            # Messages are files in the queue folder of this TMS_VAR_DIR, not anywhere else.
            assert (tmp_path / "var" / "celery-queue" / "control").is_dir()
        else:
            assert not (tmp_path / "var" / "celery-queue" / "control").exists()
            assert any("Connected to redis://" in line for line in worker.seen)
    finally:
        worker_status = worker.stop()
        beat_status = beat.stop()
    # Both stop cleanly on SIGTERM (warm shutdown), without being killed.
    assert worker_status is not None
    assert beat_status is not None
