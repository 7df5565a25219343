"""Fixtures for the headless-browser tests: a live daphne server on the test database, Chromium, a guarded page.

The server is a separate ``daphne`` process (HTTP and websockets, like
production; ``tests.servers``) started and stopped by each test, listening on a socket this
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
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from tests.browser.support import CHROMIUM_ARGS, CHROMIUM_PATH, NetworkLog, screenshot
from tests.conftest import require_service
from tests.servers import AppServer, start_app_server

# Assertions on the page retry for this long (Playwright's default of 5 s is tight on a busy CI machine).
expect.set_options(timeout=10_000)


# --- The live server ---------------------------------------------------------------------------


@dataclass
class LiveServer:
    """daphne serving the console on a loopback port (``tests.servers``), and the answers it logged."""

    app: AppServer
    access_log_path: Path

    @property
    def url(self) -> str:
        return self.app.url

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


@pytest.fixture
def console_server(transactional_db: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """daphne serving the console (and its websockets) against the test database, for one test."""
    access_log_path = tmp_path / "access.log"
    app = start_app_server(
        "daphne",
        log_path=tmp_path / "server.log",
        env={"TMS_BROWSER_ACCESS_LOG": str(access_log_path)},
        application="tests.browser.server_app:application",
    )
    try:
        yield LiveServer(app=app, access_log_path=access_log_path)
    finally:
        app.stop()
        if request.node.stash.get(_CALL_FAILED, False):
            print(f"test server log (last lines):\n{app.log_tail()}")
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
