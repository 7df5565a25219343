"""The project served by a server process of its own (daphne or gunicorn), for tests marked ``server_process``.

The process reads the same database as the test: on PostgreSQL the
``test_<name>`` database, on SQLite a test database *file* (an in-memory
database cannot be shared with another process; ``tests/conftest.py`` moves
it to a file when such a test is collected). Tests that use the server must
commit their data, so they are ``django_db(transaction=True)``. It listens on
a socket this process binds to port 0 and hands over (no port race).
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
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.db import connections

START_TIMEOUT_S = 45.0


def sqlite_test_database_to_file() -> Path | None:
    """Point the SQLite test database at a file in a new directory (returned, to delete later).

    Settings only, before the test database is created; nothing to do on PostgreSQL or when
    the test database already is a file.
    """
    database = settings.DATABASES["default"]
    if "sqlite" not in str(database.get("ENGINE", "")):
        return None
    test_settings = database.setdefault("TEST", {})
    name = str(test_settings.get("NAME") or "")
    if name and name != ":memory:" and "mode=memory" not in name:
        return None
    directory = Path(tempfile.mkdtemp(prefix="tms-server-process-"))
    test_settings["NAME"] = str(directory / "test.sqlite3")
    return directory


def sqlite_directory_remove(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def server_database_url() -> str:
    """A DATABASE_URL naming the database this test process uses right now (the test database)."""
    connection = connections["default"]
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite backend's own helper
            pytest.fail("the SQLite test database is in memory; mark the test server_process")
        return "sqlite:///" + str(Path(str(s["NAME"])).resolve())
    if connection.vendor == "postgresql":
        user, password = quote(s.get("USER") or "", safe=""), quote(s.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(str(s['NAME']), safe='')}"
    pytest.fail(f"a server process cannot share a {connection.vendor} database")


@dataclass
class ServerProcess:
    """A running server process on a loopback port."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_until_serving(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"the server did not answer /healthz within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def _command(server: str, fd: int) -> list[str]:
    if server == "daphne":  # the ASGI entry point, as `make run` serves it
        return [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", "tms_console.asgi:application"]
    if server == "gunicorn":  # the WSGI entry point with the webhook fast path, as the README deploys it
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{fd}",
            "--workers",
            "1",
            "--worker-class",
            "tms_console.gunicorn_worker.ProblemThreadWorker",
            "--threads",
            "4",
            "--limit-request-line",
            "8190",
            "--log-level",
            "warning",
            "tms_console.wsgi:application",
        ]
    raise ValueError(f"unknown server {server!r}")


def server_start(server: str, *, log_path: Path, env: Mapping[str, str] | None = None) -> ServerProcess:
    """``daphne`` or ``gunicorn`` serving the project against the test database, ``env`` over the test's own."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "DATABASE_URL": server_database_url(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(server, listener.fileno()),
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    listener.close()  # the child holds its own copy of the listening socket
    server = ServerProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    _wait_until_serving(server)
    return server
