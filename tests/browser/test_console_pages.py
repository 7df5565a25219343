"""Every console page, opened as every role in headless Chromium, loads whole under the Content-Security-Policy.

Whole means: every request the page makes is answered below 400 (the
server's own access log counts, so requests the browser makes by itself, like
the favicon, are seen too), no request fails, no console error, no
Content-Security-Policy violation, and the page's scripts did their work (the
charts drawn, the live map live and plotted, live updates connected). A role
that lacks a page's permission gets the console's 403 page, which must load
whole too. The pages are listed in ``tests/browser/pages.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer
from tests.browser.pages import CONSOLE_PAGES, NOT_FOUND_PATH, PUBLIC_PAGES, ConsoleData, console_data
from tests.browser.support import NetworkLog, login, off_loop
from tms_console.csp import HEADER as CSP_HEADER

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Persona fixtures (tests/conftest.py), one per role.
ROLES = {
    "dispatcher": "dispatcher",
    "on-call": "oncall",
    "admin": "admin_user",
    "read-only": "readonly",
    "sla-manager": "sla_manager",
}
FAVICON_WAIT_S = 10.0


def open_page(
    page: Page, network: NetworkLog, url: str, status: int, ready: Any, problems: list[str], label: str
) -> None:
    """Open ``url`` expecting ``status``; add to ``problems`` whatever went wrong on the way."""
    seen = (len(network.problems()), len(network.broken()))
    if status != 200:
        network.expect_status(url, status)
    response = page.goto(url)
    if response is None or response.status != status:
        problems.append(f"{label}: answered {response.status if response else 'nothing'}, expected {status}")
        return
    if CSP_HEADER.lower() not in {name.lower() for name in response.headers}:
        problems.append(f"{label}: no {CSP_HEADER} header")
    if ready is not None and status == 200:
        try:
            ready(page)
        except AssertionError as error:
            problems.append(f"{label}: its scripts did not finish their work: {error}")
        except Exception as error:  # Playwright's TimeoutError: reported with the page, not instead of the rest
            problems.append(f"{label}: its scripts did not finish their work: {type(error).__name__}: {error}")
    page.wait_for_load_state("load")
    problems.extend(f"{label}: {p}" for p in network.problems()[seen[0] :])
    problems.extend(f"{label}: {p}" for p in network.broken()[seen[1] :])


def server_side_failures(server: LiveServer, since: int, expected: set[tuple[int, str]]) -> list[str]:
    return [
        f"the server answered {status} to {request}"
        for status, request in server.answers()[since:]
        if status >= 400 and (status, request.split(" ", 1)[1]) not in expected
    ]


def wait_for_answer(server: LiveServer, path: str, since: int) -> int | None:
    """The status the server gave ``path`` (asked for by the browser on its own), waiting a little for it."""
    deadline = time.monotonic() + FAVICON_WAIT_S
    while time.monotonic() < deadline:
        for status, request in server.answers()[since:]:
            if request.split(" ", 1)[1] == path:
                return status
        time.sleep(0.1)
    return None


@pytest.mark.parametrize("role", list(ROLES))
def test_every_console_page_loads_whole_for_every_role(
    role: str,
    page: Page,
    live_url: str,
    console_server: LiveServer,
    network: NetworkLog,
    admin_user: User,
    request: pytest.FixtureRequest,
) -> None:
    user: User = request.getfixturevalue(ROLES[role])
    data: ConsoleData = off_loop(console_data, admin_user)
    login(page, live_url, user)
    since = len(console_server.answers())

    problems: list[str] = []
    expected: set[tuple[int, str]] = set()
    opened = 0
    fresh = User.objects.get(pk=user.pk)  # no permission cache from the fixtures
    for console_page in CONSOLE_PAGES:
        status = console_page.status_for(fresh)
        if status is None:
            continue
        url = console_page.url(live_url, data)
        if status != 200:
            expected.add((status, url.removeprefix(live_url)))
        open_page(page, network, url, status, console_page.ready, problems, f"{role} {console_page.path}")
        opened += 1
    expected.add((404, NOT_FOUND_PATH))
    open_page(page, network, live_url + NOT_FOUND_PATH, 404, None, problems, f"{role} {NOT_FOUND_PATH}")

    # The pages (the admin's too) name their icon; the browser asked for it by itself and got it. (Without
    # one it asks for /favicon.ico, which Chromium skips while Playwright routes requests: that path is
    # checked in tests/tms_console/test_csp.py.)
    assert wait_for_answer(console_server, "/static/favicon.svg", 0) == 200
    problems += server_side_failures(console_server, since, expected)
    assert problems == [], "\n".join(problems)
    assert opened >= 20 if role == "admin" else opened >= 15


def test_public_pages_load_whole_for_a_visitor(
    page: Page, live_url: str, console_server: LiveServer, network: NetworkLog
) -> None:
    problems: list[str] = []
    for console_page in PUBLIC_PAGES:
        url = console_page.url(live_url, ConsoleData(0, 0, 0, 0, 0, 0, 0, ""))
        open_page(page, network, url, 200, console_page.ready, problems, f"visitor {console_page.path}")
    problems += server_side_failures(console_server, 0, set())
    assert problems == [], "\n".join(problems)


def test_a_page_that_breaks_the_policy_fails_the_sweep(
    page: Page, live_url: str, console_server: LiveServer, network: NetworkLog, dispatcher: User
) -> None:
    """The sweep's own check: an inline script and a missing file in a console page are reported, not missed."""
    login(page, live_url, dispatcher)
    problems: list[str] = []
    open_page(page, network, f"{live_url}/carriers/", 200, None, problems, "clean")
    assert problems == []
    page.evaluate(
        """() => {
          const s = document.createElement("script"); s.textContent = "window.__inline = 1"; document.body.append(s);
          const i = document.createElement("img"); i.src = "/static/no-such-image.png"; document.body.append(i);
        }"""
    )
    page.wait_for_function("() => document.images[document.images.length - 1].complete")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__inline === undefined"), "the inline script ran: the policy is not enforced"
    assert any(v["directive"] == "script-src-elem" for v in network.csp_violations), network.csp_violations
    assert any("no-such-image.png" in f for f in network.failed_responses), network.failed_responses
    assert any("404" in e for e in network.console_errors), network.console_errors
    # Seen and asserted: let the fixture's own check pass.
    network.csp_violations.clear()
    network.console_errors.clear()


def test_the_pickers_that_lost_their_inline_handler_still_submit_on_change(
    page: Page, live_url: str, sla_manager: User
) -> None:
    """``onchange="this.form.submit()"`` became ``data-autosubmit`` (static/js/console.js); the SLA window
    picker became plain links (no script at all)."""
    login(page, live_url, sla_manager, next_path="/sla/")
    page.get_by_role("navigation", name="Window").get_by_role("link", name="7 d").click()
    page.wait_for_url(f"{live_url}/sla/?window=7d")
    expect(page.get_by_role("navigation", name="Window").get_by_role("link", name="7 d")).to_have_attribute(
        "aria-current", "true"
    )
    page.goto(f"{live_url}/sla/dashboard/breaches/")
    page.get_by_label("Status").select_option(index=1)
    page.wait_for_url(lambda url: "/sla/dashboard/breaches/?status=" in url)
