"""The site under its real servers, daphne (ASGI) and gunicorn (WSGI), for tests about what crosses the wire.

Each server is a child process listening on a loopback socket this process
binds to port 0 and hands over (no port race with other test runs), reading
the test database: on PostgreSQL the ``test_<name>`` database, on SQLite a
test database *file* (``sqlite_test_database_to_file`` moves it out of memory
when such tests are collected). Data a test makes must be committed for the
server to see it: those tests are ``django_db(transaction=True)``.

Raw requests (chunked bodies, bodies with bytes no HTTP library would send)
go through ``raw_request``, over a plain socket.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlparse

import pytest
import requests
from django.conf import settings
from django.db import connections

SERVER_KINDS = ("daphne", "gunicorn")
START_TIMEOUT_S = 45.0
IO_TIMEOUT_S = 30.0  # an upper bound for a socket operation, never asserted as a timing


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
    """Point an in-memory SQLite test database at a file in a new temporary directory (returned).

    Settings only: called at the end of collection, before any connection is made.
    """
    database = settings.DATABASES["default"]
    if "sqlite" not in str(database.get("ENGINE", "")):
        return None
    test_settings = database.setdefault("TEST", {})
    name = str(test_settings.get("NAME") or "")
    if name and name != ":memory:" and "mode=memory" not in name:
        return None  # already a file
    directory = Path(tempfile.mkdtemp(prefix="tms-live-"))
    test_settings["NAME"] = str(directory / "test.sqlite3")
    return directory


def remove_directory(directory: Path | None) -> None:
    # Django deletes the database file; WAL side files and the directory are ours.
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class LiveApp:
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
        # The README's ingest configuration in small: gthread workers, body limit and fast path in front of Django.
        return [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--workers", "1",
                "--worker-class", "gthread", "--threads", "4", "--log-level", "warning",
                "tms_console.wsgi:application"]  # fmt: skip
    raise ValueError(f"unknown server kind {kind!r}")


def start_live_app(kind: str, *, log_path: Path, env: Mapping[str, str] | None = None) -> LiveApp:
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
    app = LiveApp(kind=kind, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{kind} exited with {process.returncode}:\n{app.log_tail()}")
        try:
            if requests.get(f"{app.url}/healthz", timeout=2).status_code == 200:
                return app
        except requests.RequestException:
            pass
        time.sleep(0.1)
    app.stop()
    pytest.fail(f"{kind} did not answer /healthz within {START_TIMEOUT_S:.0f} s:\n{app.log_tail()}")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    sent_body_bytes: int  # how much of the body the client had sent when the answer came


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Server(Protocol):
    @property
    def address(self) -> tuple[str, int]: ...


def raw_request(
    server: Server,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    chunks: Iterable[bytes] | None = None,
    tls: ssl.SSLContext | None = None,
) -> RawResponse:
    """One HTTP/1.1 request over a fresh socket (TLS with ``tls``), its body as is (``body``) or chunked (``chunks``).

    With ``chunks`` the body is sent chunk by chunk, and sending stops as soon
    as the server answers or stops reading (an early 413): ``sent_body_bytes``
    says how far the client got.
    """
    host, port = server.address
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sent = 0
    received = bytearray()
    plain = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
    sock = tls.wrap_socket(plain, server_hostname=host) if tls is not None else plain
    with sock:
        sock.sendall(head)
        if body is not None and chunks is None:
            sock.sendall(body)
            sent = len(body)
        elif chunks is not None:
            sock.setblocking(False)
            try:
                for data in [*(_chunk(c) for c in chunks if c), b"0\r\n\r\n"]:
                    view = memoryview(data)
                    while view:
                        early = _early_answer(sock)
                        if early is not None:
                            received += early
                            raise _Answered
                        try:
                            written = sock.send(view)
                        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                            select.select([sock], [sock], [], IO_TIMEOUT_S)
                            continue
                        view = view[written:]
                    sent += len(data)
            except (_Answered, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                pass  # the server answered (or hung up) before the whole body was sent
            sock.setblocking(True)
            sock.settimeout(IO_TIMEOUT_S)
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break  # the answer was read up to the reset (Linux keeps what arrived before it)
            if not data:
                break
            received += data
    return _parse_response(bytes(received), sent)


class _Answered(Exception):
    """The server's answer is readable: stop sending."""


def _early_answer(sock: socket.socket) -> bytes | None:
    """What the server has sent already (b"" if it closed), or None while it is still reading.

    Read rather than only polled: after a TLS 1.3 handshake the socket is
    readable for the session tickets alone, which are not an answer.
    """
    if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return None
    try:
        return sock.recv(65536)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    except (ConnectionResetError, ssl.SSLError):
        return b""


def _parse_response(data: bytes, sent: int) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # an interim "100 Continue"
        head, _, rest = rest.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise AssertionError(f"no HTTP answer: {data[:200]!r}")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        rest = bytes(body)
    elif "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    return RawResponse(status=status, headers=headers, body=rest, sent_body_bytes=sent)
