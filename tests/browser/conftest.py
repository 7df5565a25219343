"""Fixtures for the headless-browser tests: a live daphne server on the test database, Chromium, a guarded page.

The server is a separate ``daphne`` process (HTTP and websockets, like
production) started and stopped by each test, listening on a socket this
process binds to port 0 and hands over (no port race with other test runs).
It reads the same database as the test: on PostgreSQL the ``test_<name>``
database, on SQLite a test database *file* (an in-memory database cannot be
shared with another process): ``tests/conftest.py`` moves the SQLite test
database to a temporary file for the session when browser tests are collected. Tests that use
the server must therefore commit their data: they are marked
``django_db(transaction=True)``. With ``REDIS_URL`` set both processes share the
Redis channel layer; without it the server relays events from the database
outbox (``missions.live``) and the map polls the database.

Chromium is Debian's ``/usr/bin/chromium`` driven by the ``playwright``
package (never a browser download), headless, with a fresh profile per test.
Every request a page makes is recorded; one that would leave the machine is
blocked and fails the test, and so does any Content-Security-Policy violation
or console error in a page. The server writes each answer's status to an
access log (``LiveServer.answers``): it sees the requests the browser makes on
its own (the favicon), which Playwright does not report. A failed test leaves
a screenshot of its page under var/screenshots/ and prints the server's log.

Writes a test makes while the page is open (a carrier's answer, telemetry)
go through ``tests.browser.support.off_loop``: Playwright keeps an event loop
on the test's thread, beside which the after-commit channel-layer broadcasts
cannot run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.db import connections
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from tests.browser.support import CHROMIUM_ARGS, CHROMIUM_PATH, NetworkLog, screenshot
from tests.conftest import require_service

SERVER_START_TIMEOUT_S = 45.0
# Assertions on the page retry for this long (Playwright's default of 5 s is tight on a busy CI machine).
expect.set_options(timeout=10_000)


def server_database_url() -> str:
    """A DATABASE_URL naming the database this test process uses right now (the test database)."""
    connection = connections["default"]
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():  # type: ignore[attr-defined]  # the SQLite backend's own helper
            pytest.fail("the SQLite test database is in memory; browser tests need it in a file")
        return "sqlite:///" + str(Path(str(s["NAME"])).resolve())
    if connection.vendor == "postgresql":
        user, password = quote(s.get("USER") or "", safe=""), quote(s.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(str(s['NAME']), safe='')}"
    pytest.fail(f"browser tests do not know how to share a {connection.vendor} database")


# --- The live server ---------------------------------------------------------------------------


@dataclass
class LiveServer:
    """A running daphne process serving the console on a loopback port."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    access_log_path: Path

    def answers(self) -> list[tuple[int, str]]:
        """(status, "METHOD /path?query") of every HTTP request the server has answered, oldest first."""
        try:
            lines = self.access_log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            status, _, request = line.partition(" ")
            found.append((int(status), request))
        return found

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


def _wait_until_serving(server: LiveServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the test server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"the test server did not answer /healthz within {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


@pytest.fixture
def console_server(transactional_db: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """daphne serving the console (and its websockets) against the test database, for one test."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "DATABASE_URL": server_database_url(),
        "LOG_LEVEL": os.environ.get("TMS_BROWSER_SERVER_LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        "TMS_BROWSER_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "--fd",
                str(listener.fileno()),
                "-v",
                "0",
                "tests.browser.server_app:application",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    listener.close()  # the child holds its own copy of the listening socket
    server = LiveServer(
        url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, access_log_path=tmp_path / "access.log"
    )
    try:
        _wait_until_serving(server)
        yield server
    finally:
        server.stop()
        if request.node.stash.get(_CALL_FAILED, False):
            print(f"test server log (last lines):\n{server.log_tail()}")
        # The test's own connections: under the Playwright driver they live in an
        # execution context the test-database teardown does not see, and one left
        # open keeps PostgreSQL from dropping the test database at the end.
        connections.close_all()


@pytest.fixture
def live_url(console_server: LiveServer) -> str:
    return console_server.url


# --- Chromium --------------------------------------------------------------------------------


@pytest.fixture
def playwright_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Playwright]:
    """Playwright for one test only.

    Its sync API keeps an asyncio loop marked as running on this thread while
    it is started; Django would then refuse the test's own (synchronous) ORM
    calls. Allowing them is scoped to the browser test, and the driver is
    stopped with it, so no other test ever runs beside a live loop.
    """
    require_service("chromium", os.access(CHROMIUM_PATH, os.X_OK))
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def network() -> NetworkLog:
    return NetworkLog()


@pytest.fixture
def browser_context(playwright_driver: Playwright, network: NetworkLog, tmp_path: Path) -> Iterator[BrowserContext]:
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),  # a fresh profile per test
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 900},
        timezone_id="UTC",
        locale="en-US",
    )
    context.set_default_timeout(10_000)
    network.attach(context)
    try:
        yield context
    finally:
        context.close()


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
        network = getattr(item, "funcargs", {}).get("network")
        if isinstance(network, NetworkLog):
            network.freeze()  # what the pages do while the fixtures close (the server stopping) is not the result
    return report


@pytest.fixture
def page(browser_context: BrowserContext, network: NetworkLog, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A browser tab whose requests and console are recorded.

    Any request leaving loopback, Content-Security-Policy violation or console error fails the test.
    """
    tab = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    network.watch(tab)
    yield tab
    if request.node.stash.get(_CALL_FAILED, False):
        # What the page showed when the test failed, for the person reading the failure.
        with contextlib.suppress(Exception):
            print(f"screenshot of the failed page: {screenshot(tab, f'FAILED-{request.node.name}')}")
    problems = network.problems()
    if problems:
        pytest.fail("the browser reported:\n" + "\n".join(problems))
