"""A nats-server with JetStream of the test's own (a free port, a temporary store), and relay helpers.

Each test gets its own server, so killing it never touches the shared one on
4222, and stream names and contents are the test's alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from missions.bus.publisher import NatsPublisher
from missions.bus.reader import Replayed, replay
from tests.conftest import require_service
from tests.servers import free_port, server_env

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
START_TIMEOUT_S = 15.0


@dataclass
class NatsServer:
    port: int
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            # The client port opens before JetStream is ready: wait until it answers an API call.
            if _jetstream_answers(self.url):
                return
            time.sleep(0.1)
        raise AssertionError(f"nats-server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


async def _quiet(exc: Exception) -> None:
    """Refused connections are expected while the server starts: no traceback in the log."""


def _jetstream_answers(url: str) -> bool:
    async def ask() -> None:
        import nats

        nc = await nats.connect(
            url,
            allow_reconnect=False,
            connect_timeout=1,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            error_cb=_quiet,
        )
        try:
            await nc.jetstream(timeout=1).account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(ask())
    except Exception:
        return False
    return True


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    require_service("nats-server", os.path.exists(NATS_SERVER))
    server = NatsServer(port=free_port(), store=tmp_path / "jetstream", log=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bus(nats_server: NatsServer, settings: Any) -> Iterator[NatsPublisher]:
    settings.NATS_URL = nats_server.url
    settings.BUS_GAP_GRACE_SECONDS = 0.5
    settings.PUBLIC_BASE_URL = "https://tms.example"
    publisher = NatsPublisher(nats_server.url, timeout_seconds=15.0)
    try:
        yield publisher
    finally:
        publisher.close()


def stream_count(url: str, stream: str) -> int:
    async def ask() -> int:
        import nats

        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
        try:
            info = await nc.jetstream(timeout=10).stream_info(stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(ask())


def stream_events(server: NatsServer, *, stream: str | None = None) -> list[Replayed]:
    """Every message the stream holds.

    Read up to the stream's message count, so the read never ends on a fetch that times out: nats-py's
    fetch may raise a bare ``asyncio.TimeoutError`` there, which ``replay`` does not take for the end.
    """
    name = stream or settings.BUS_EVENTS_STREAM
    count = stream_count(server.url, name)
    return list(replay(server.url, stream=name, limit=count, idle_seconds=5.0)) if count else []


def relay_process(server: NatsServer, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``manage.py events_relay`` on the test database, as ``make run`` starts it."""
    child_env = server_env(NATS_URL=server.url, BUS_GAP_GRACE_SECONDS="0.5", LOG_LEVEL="INFO", **env)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "events_relay"],
            cwd=settings.BASE_DIR,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
