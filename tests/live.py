"""Live application servers for tests: daphne (``make run``) and gunicorn (``tms_console.wsgi``).

Each server is a separate process serving the test database on a socket
this process binds to port 0 and hands over (no port race), started with
the environment a test names and stopped afterwards. Tests that talk to one
commit their data (``django_db(transaction=True)``) and carry the ``live``
marker: on SQLite, the test database then lives in a file the server can
open (``tests/conftest.py`` moves it there).

Servers run with ``DEBUG`` and ``TMS_TESTING`` off (the production code
paths), the test settings' fast password hasher, eager Celery, and the
``PARTNER_TRUSTED_PROXIES`` a test gives. ``client_from`` makes an HTTP client
whose connections leave from a chosen loopback address, so a test can act as
the trusted edge (127.0.0.2) or as a direct client (127.0.0.1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connections

START_TIMEOUT_S = 60.0
EDGE_ADDRESS = "127.0.0.2"  # the address tests use to act as the trusted proxy
SECRET_KEY = "live-test-only-" + "k" * 50


def database_url() -> str:
    """A DATABASE_URL naming the database this test process uses now (the test database)."""
    connection = connections["default"]
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(s.get("TEST", {}).get("NAME") or s["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            pytest.fail("the SQLite test database is in memory; live tests need it in a file (mark them `live`)")
        return "sqlite:///" + str(Path(name).resolve())
    if connection.vendor == "postgresql":
        user, password = quote(s.get("USER") or "", safe=""), quote(s.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(str(s['NAME']), safe='')}"
    pytest.fail(f"live tests do not know how to share a {connection.vendor} database")


@dataclass
class LiveApp:
    """A running server process."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _command(kind: str, fd: int) -> list[str]:
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", "tms_console.asgi:application"]
    if kind == "gunicorn":
        # Two workers: limits must hold across processes, not only across one process's threads.
        return [
            sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--workers", "2",
            "--worker-class", "gthread", "--threads", "8", "--log-level", "warning",
            # A burst warms one keep-alive connection per thread and then waits for the others: on a
            # loaded machine that takes longer than gunicorn's default 2 s keep-alive, which closed the
            # first connections before their request was sent.
            "--keep-alive", "60",
            "tms_console.wsgi:application",
        ]  # fmt: skip
    raise ValueError(kind)


def server_env(tmp_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",  # its MD5 hasher reads the test's users
        "TMS_TESTING": "0",
        "DEBUG": "0",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "DB_POOL": "0",
        "DATABASE_URL": database_url(),
        "TMS_VAR_DIR": str(tmp_dir / "var"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@contextmanager
def serve(kind: str, env: dict[str, str], log_path: Path) -> Iterator[LiveApp]:
    """Start ``kind`` on a fresh loopback port with ``env``; wait for ``/healthz``; stop it afterwards."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(kind, listener.fileno()),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    listener.close()  # the child holds its own copy
    app = LiveApp(kind=kind, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_until_serving(app)
        yield app
    finally:
        app.stop()


def _wait_until_serving(app: LiveApp) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            pytest.fail(f"{app.kind} exited with {app.process.returncode}:\n{app.log_tail()}")
        try:
            if httpx.get(f"{app.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    app.stop()
    pytest.fail(f"{app.kind} did not answer /healthz within {START_TIMEOUT_S:.0f} s:\n{app.log_tail()}")


def client_from(app: LiveApp, source: str = "127.0.0.1", **kwargs: object) -> httpx.Client:
    """An HTTP client to ``app`` whose connections leave from ``source`` (127.0.0.2 acts as the edge)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=app.url, transport=transport, timeout=30, **kwargs)  # type: ignore[arg-type]


def live_env(kind: str, tmp: Path, **extra: str) -> dict[str, str]:
    """``server_env``, plus one Prometheus directory for gunicorn's workers (a scrape adds them up)."""
    env = server_env(tmp, **extra)
    if kind == "gunicorn":
        (tmp / "prometheus").mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "prometheus")
    return env


Send = Callable[[httpx.Client, int], httpx.Response]


def burst(app: LiveApp, count: int, send: Send, *, warm: str = "/healthz", **client: Any) -> list[httpx.Response]:
    """``count`` requests at once, one connection per thread, released together by a barrier.

    Each thread first GETs ``warm`` on its connection (the burst is the requests, not the
    handshakes; the login page also gives the CSRF cookie).
    """
    barrier = threading.Barrier(count)

    def one(index: int) -> httpx.Response:
        with client_from(app, **client) as http:
            http.get(warm)
            barrier.wait(timeout=60)
            return send(http, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def inside_one_window(window_seconds: int, margin_seconds: float = 8.0) -> None:
    """Wait, if needed, so that a short burst does not straddle two fixed windows of a limit."""
    left = window_seconds - time.time() % window_seconds
    if left < margin_seconds:
        time.sleep(left + 0.2)


def field_items(value: str) -> dict[str, dict[str, str]]:
    """A ``RateLimit`` / ``RateLimit-Policy`` field as {policy: {parameter: value}} (a list of items)."""
    items: dict[str, dict[str, str]] = {}
    for item in value.split(","):
        name, *params = item.strip().split(";")
        items[name.strip('"')] = dict(p.split("=", 1) for p in params)
    return items


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value in a Prometheus text exposition (0 when absent)."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        rest = series[len(name) :]
        found = set(rest.strip("{}").split(",")) if rest.startswith("{") else set()
        if rest and not rest.startswith("{"):
            continue  # another metric whose name starts with this one
        if wanted <= found:
            return float(value)
    return 0.0
