"""The project under its real servers, as separate processes on the test database, for tests about what they do.

``make run`` serves everything with daphne (ASGI); the README's partner
ingest path is gunicorn (WSGI, ``tms_console.wsgi`` with the webhook fast
path in front of Django). Tests that are about what goes over the wire, how
a server process shuts down or survives a fault, start one of them
(``start_app_server``, or ``serving`` as a context manager) on a loopback
socket this process binds to port 0 and hands over (no port race with other
test runs), and stop it afterwards.

The servers read the database this test process uses (``server_database_url``):
on PostgreSQL the ``test_<name>`` database, on SQLite a test database *file*
(an in-memory database cannot be shared with another process), so when such
tests are collected the SQLite test database is moved to a temporary file for
the session (``sqlite_test_database_to_file``; ``tests/conftest.py`` does it
for tests marked ``browser``, ``live`` or ``server_process``). Tests that use
a server commit their data: they are marked ``django_db(transaction=True)``.

Set ``TMS_TEST_SERVER_LOG_LEVEL`` to see more of what the server processes log
(their log files are printed when a test fails).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
import requests
from django.conf import settings
from django.db import connections

SERVER_KINDS = ("daphne", "gunicorn")
SERVER_START_TIMEOUT_S = 60.0  # an upper bound on a busy machine, never asserted as a timing
ASGI_APPLICATION = "tms_console.asgi:application"

# gunicorn in small: one gthread worker, the webhook fast path in front of Django.
GUNICORN_GTHREAD = ("--workers", "1", "--worker-class", "gthread", "--threads", "4")
# The README's partner ingest command in small: its worker class (gunicorn's own refusals, such as a
# request line over the limit, are problem documents) and its request-line limit.
GUNICORN_PROBLEM_WORKER = (
    "--workers", "1", "--worker-class", "tms_console.gunicorn_worker.ProblemThreadWorker", "--threads", "4",
    "--limit-request-line", "8190",
)  # fmt: skip


def server_database_url() -> str:
    """A DATABASE_URL naming the database this test process uses right now (the test database)."""
    connection = connections["default"]
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite backend's own helper
            pytest.fail(
                "the SQLite test database is in memory; a server process needs it in a file"
                " (mark the test `live`, `server_process` or `browser`)"
            )
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
    # A directory of our own per run: other test runs on this machine use their own.
    directory = Path(tempfile.mkdtemp(prefix="tms-servers-"))
    test_settings["NAME"] = str(directory / "test.sqlite3")
    return directory


def remove_directory(directory: Path | None) -> None:
    # Django deletes the database file; WAL side files and the directory are ours.
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def server_env(**extra: str) -> dict[str, str]:
    """Environment for a project process (server, worker, command) on the test database, ``extra`` over it."""
    env = dict(os.environ)
    # The test's own allowance for sync calls beside Playwright's loop, and any metrics directory
    # of the test run, are not the child's: a child that wants one is given it in ``extra``.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
            "DATABASE_URL": server_database_url(),
            "LOG_LEVEL": os.environ.get("TMS_TEST_SERVER_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@dataclass
class AppServer:
    """A running daphne or gunicorn process serving the site on a loopback port."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        return str(parsed.hostname), int(parsed.port or 80)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def server_command(
    kind: str, fd: int, *, application: str = ASGI_APPLICATION, gunicorn_options: Sequence[str] = GUNICORN_GTHREAD
) -> list[str]:
    """The command line of ``kind`` serving on the listening socket ``fd`` (daphne serves ``application``)."""
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0", application]
    if kind == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", *gunicorn_options, "--log-level", "warning",
            "tms_console.wsgi:application",
        ]  # fmt: skip
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


def start_app_server(
    kind: str,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    application: str = ASGI_APPLICATION,
    gunicorn_options: Sequence[str] = GUNICORN_GTHREAD,
    port: int = 0,
) -> AppServer:
    """Start ``kind`` ("daphne" or "gunicorn") on the test database, ``env`` over ``server_env()``; wait for it.

    ``port``: listen on that port (from ``free_port()``, for a server that must know its own URL).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen(256)
    port = listener.getsockname()[1]
    command = server_command(kind, listener.fileno(), application=application, gunicorn_options=gunicorn_options)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=server_env(**(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    listener.close()  # the child holds its own copy of the listening socket
    server = AppServer(kind=kind, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    _wait_until_serving(server)
    return server


@contextmanager
def serving(
    kind: str,
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    application: str = ASGI_APPLICATION,
    gunicorn_options: Sequence[str] = GUNICORN_GTHREAD,
) -> Iterator[AppServer]:
    """``start_app_server`` for the ``with`` block, stopped at its end."""
    server = start_app_server(
        kind, log_path=log_path, env=env, application=application, gunicorn_options=gunicorn_options
    )
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    """A loopback port free right now, for a process that binds it by number (a small race is accepted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
