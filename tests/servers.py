"""The application under its real servers, for tests about HTTP behaviour.

``make run`` serves everything with daphne (ASGI); the README's partner
ingest path is gunicorn (WSGI, ``tms_console.wsgi`` with the webhook fast
path in front of Django). Tests that are about what goes over the wire start
one of each on a loopback socket this process binds to port 0 and hands over
(no port race with other test runs), against the test database.

The servers read the database this test process uses: on PostgreSQL the
``test_<name>`` database, on SQLite a test database *file* (an in-memory
database cannot be shared with another process), so when such tests are
collected the SQLite test database is moved to a temporary file for the
session (``sqlite_test_database_to_file``). Tests that use a server commit
their data: they are marked ``django_db(transaction=True)``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
import requests
from django.conf import settings
from django.db import connections

SERVER_KINDS = ("daphne", "gunicorn")
SERVER_START_TIMEOUT_S = 45.0


def server_database_url() -> str:
    """A DATABASE_URL naming the database this test process uses right now (the test database)."""
    connection = connections["default"]
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite backend's own helper
            pytest.fail("the SQLite test database is in memory; a server process needs it in a file")
        return "sqlite:///" + str(Path(str(s["NAME"])).resolve())
    if connection.vendor == "postgresql":
        user, password = quote(s.get("USER") or "", safe=""), quote(s.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(str(s['NAME']), safe='')}"
    pytest.fail(f"a server process does not know how to share a {connection.vendor} database")


def sqlite_test_database_to_file() -> Path | None:
    """Point the SQLite test database at a file in a new temporary directory (returned), if it is in memory.

    Settings only: called before any connection is made, at the end of collection.
    """
    database = settings.DATABASES["default"]
    if "sqlite" not in str(database.get("ENGINE", "")):
        return None
    test_settings = database.setdefault("TEST", {})
    name = str(test_settings.get("NAME") or "")
    if name and name != ":memory:" and "mode=memory" not in name:
        return None  # already a file
    directory = Path(tempfile.mkdtemp(prefix="tms-servers-"))
    test_settings["NAME"] = str(directory / "test.sqlite3")
    return directory


def remove_directory(directory: Path | None) -> None:
    # Django deletes the database file; WAL side files and the directory are ours.
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class AppServer:
    """A running daphne or gunicorn process serving the whole site on a loopback port."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        return str(parsed.hostname), int(parsed.port or 80)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _argv(kind: str, fd: int) -> list[str]:
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", "tms_console.asgi:application"]
    if kind == "gunicorn":
        # The README's ingest configuration in small: gthread workers, the fast path in front of Django.
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{fd}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "--log-level",
            "warning",
            "tms_console.wsgi:application",
        ]
    raise ValueError(f"unknown server kind {kind!r}")


def _wait_until_serving(server: AppServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"{server.kind} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"{server.kind} did not answer /healthz within {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def start_app_server(kind: str, *, log_path: Path, env: Mapping[str, str] | None = None) -> AppServer:
    """Start ``kind`` ("daphne" or "gunicorn") on the test database and wait until it answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "DATABASE_URL": server_database_url(),
        "LOG_LEVEL": os.environ.get("TMS_TEST_SERVER_LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    child_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _argv(kind, listener.fileno()),
            cwd=settings.BASE_DIR,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    listener.close()  # the child holds its own copy of the listening socket
    server = AppServer(kind=kind, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    _wait_until_serving(server)
    return server


def free_port() -> int:
    """A loopback port free right now, for a process that binds it by number (a small race is accepted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
