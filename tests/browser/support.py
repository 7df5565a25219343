"""Helpers for the browser tests: the loopback-only network guard, the real two-factor login, screenshots."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Response,
    Route,
    WebSocket,
    expect,
)

T = TypeVar("T")

PASSWORD = "correct-horse-battery-staple"  # the personas' password (tests/conftest.py)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Chromium's own in-page schemes never touch the network.
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "chrome", "chrome-error", "devtools"})
LIVE_TIMEOUT_MS = 15_000  # generous: a live update crosses the relay, the socket and a re-fetch
SCREENSHOT_DIR = Path(settings.VAR_DIR) / "screenshots"

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def is_loopback(url: str) -> bool:
    """True for a URL that stays on this machine (or never reaches the network at all)."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return (parts.hostname or "") in LOOPBACK_HOSTS


# Reports every Content-Security-Policy violation in a page to the test (a binding, below).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__tmsCspViolation({
    directive: event.effectiveDirective, blocked: event.blockedURI, source: event.sourceFile,
    line: event.lineNumber, sample: event.sample, document: event.documentURI,
  });
}, true);
"""


@dataclass
class NetworkLog:
    """What a browser context did on the network and in its pages' consoles.

    Requests that would leave the machine are blocked and kept in ``outside``.
    The ``page`` fixture fails a test on any of those, on any Content-Security-Policy
    violation and on any console error (``problems``); answers of 400 and more
    and requests that failed are kept too, for tests that check every page loads
    whole (``broken``).
    """

    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[dict[str, object]] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    # Documents a test opens knowing they answer 4xx (a 403 page for a role without the permission).
    expected_statuses: dict[str, int] = field(default_factory=dict)
    frozen: bool = False

    def attach(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self._seen(request.url, self.requests))
        context.on("response", self._response)
        context.on("requestfailed", self._request_failed)
        # Block (rather than only report) so a page under test can never reach out, even once.
        context.route(re.compile(r".*"), self._route)
        context.expose_binding("__tmsCspViolation", lambda _source, violation: self._violation(violation))
        context.add_init_script(_CSP_LISTENER)

    def watch(self, page: Page) -> None:
        page.on("websocket", lambda ws: self._socket(ws))
        page.on("pageerror", lambda error: self._keep(self.page_errors, f"{page.url}: {error}"))
        page.on("console", self._console)

    def expect_status(self, url: str, status: int) -> None:
        """Opening ``url`` answers ``status`` on purpose: neither a broken page nor a console error."""
        self.expected_statuses[url] = status

    def freeze(self) -> None:
        """Stop recording problems: what pages do once the test is over (the server stopping) is not its result."""
        self.frozen = True

    def _keep(self, into: list[T], item: T) -> None:
        if not self.frozen:
            into.append(item)

    def _seen(self, url: str, into: list[str]) -> None:
        into.append(url)
        if not is_loopback(url):
            self.outside.append(url)

    def _socket(self, ws: WebSocket) -> None:
        self._seen(ws.url, self.websockets)

    def _route(self, route: Route) -> None:
        if is_loopback(route.request.url):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and self.expected_statuses.get(response.url) != response.status:
            self._keep(self.failed_responses, f"{response.status} {response.request.resource_type} {response.url}")

    def _request_failed(self, request: Request) -> None:
        failure = request.failure or ""
        # Leaving a page cancels its fetches in flight (net::ERR_ABORTED): nothing was broken.
        # Requests leaving the machine are reported as such (``outside``).
        if "ERR_ABORTED" in failure or not is_loopback(request.url):
            return
        self._keep(self.failed_requests, f"{failure} {request.resource_type} {request.url}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        location = message.location.get("url", "")
        if location and not is_loopback(location):
            return  # the browser's note on a request the guard blocked: reported as ``outside``
        status = self.expected_statuses.get(location)
        if status is not None and message.text.startswith(
            f"Failed to load resource: the server responded with a status of {status}"
        ):
            return  # the browser's own note on a document the test opened knowing its status
        self._keep(self.console_errors, f"{location}: {message.text}")

    def _violation(self, violation: dict[str, object]) -> None:
        self._keep(self.csp_violations, violation)

    def assert_loopback_only(self) -> None:
        assert not self.outside, f"requests left the machine: {sorted(set(self.outside))}"

    def problems(self) -> list[str]:
        """What fails any browser test: requests leaving the machine, CSP violations, console errors."""
        found = [f"request left the machine: {url}" for url in sorted(set(self.outside))]
        found += [f"Content-Security-Policy violation: {v}" for v in self.csp_violations]
        found += [f"console error: {text}" for text in self.console_errors]
        return found

    def broken(self) -> list[str]:
        """Answers of 400 and more (other than expected ones) and failed requests, page errors too."""
        return [*self.failed_responses, *self.failed_requests, *(f"page error: {e}" for e in self.page_errors)]


def datetime_local(dt: datetime) -> str:
    """The value a datetime-local input takes (the console's forms take their times in UTC)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def totp_code(user: User) -> str:
    """The code the user's authenticator app shows right now (their confirmed TOTP device)."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    value = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
    return str(value).zfill(device.digits)


def login(
    page: Page,
    base_url: str,
    user: User,
    *,
    password: str = PASSWORD,
    next_path: str = "/",
    screenshots: str = "",
) -> None:
    """Sign in through the real two-step form: username and password, then a one-time code.

    ``screenshots``: a name prefix to keep a picture of each step.
    """
    page.goto(f"{base_url}/account/login/?next={next_path}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.locator('input[name="auth-username"]').fill(user.get_username())
    page.locator('input[name="auth-password"]').fill(password)
    if screenshots:
        screenshot(page, f"{screenshots}-password")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="One-time code")).to_be_visible()
    page.locator('input[name="token-otp_token"]').fill(totp_code(user))
    if screenshots:
        screenshot(page, f"{screenshots}-code")
    page.get_by_role("button", name="Verify and sign in").click()
    page.wait_for_url(lambda url: "/account/login/" not in url)


def screenshot(page: Page, name: str, *, part: Locator | None = None) -> Path:
    """A full-page PNG (or one of ``part``) under var/screenshots/ for a person to look at; never compared."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    if part is not None:
        part.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


def mark_page(page: Page) -> None:
    """Tag the loaded document; the tag survives live updates and disappears on any reload or navigation."""
    page.evaluate("window.__tmsNoReload = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__tmsNoReload === true"), "the page was reloaded or navigated away"


def off_loop(fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """Run a write the way another process would: on a thread with no event loop, committed, connection closed.

    Playwright's sync API keeps an asyncio loop running on the test's thread,
    and the after-commit broadcasts (``async_to_sync`` to the channel layer)
    refuse to run beside it: called here directly, a service's Redis
    broadcast would be dropped and the page would never hear of the change.
    """

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()  # this thread's connection; a leftover one blocks dropping the test database

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=60)
