"""A refused one-time code is answered with its reason on the code step, in the browser; a lost sign-in says so.

Headless Chromium through the real two-step form, real TOTP codes, django-otp's real back-off.
"""

from __future__ import annotations

import re
from binascii import unhexlify

import pytest
from django.contrib.auth.models import User
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.support import PASSWORD, NetworkLog, screenshot, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CODE_HEADING = "One-time code"
PASSWORD_HEADING = "Sign in"


def code_steps_from_now(user: User, steps: int) -> str:
    """The code the user's authenticator showed ``steps`` periods ago (negative) or will show (positive)."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    value = totp(unhexlify(device.key.encode()), step=device.step, t0=device.t0, digits=device.digits, drift=steps)
    return str(value).zfill(device.digits)


def password_step(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/account/login/")
    page.locator('input[name="auth-username"]').fill(user.get_username())
    page.locator('input[name="auth-password"]').fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name=CODE_HEADING)).to_be_visible()


def enter_code(page: Page, code: str) -> None:
    page.locator('input[name="token-otp_token"]').fill(code)
    page.get_by_role("button", name="Verify and sign in").click()


def refused_on_code_step(page: Page, message: str) -> None:
    """Still on the code step, the code field ready for another try, the reason shown as an alert."""
    expect(page.get_by_role("alert")).to_contain_text(message)
    expect(page.get_by_role("heading", name=CODE_HEADING)).to_be_visible()
    expect(page.locator('input[name="token-otp_token"]')).to_be_visible()
    expect(page).to_have_url(re.compile(r"/account/login/"))


def signed_in(page: Page, base_url: str) -> None:
    page.wait_for_url(lambda url: "/account/login/" not in url)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_a_wrong_code_is_called_wrong_and_the_back_off_says_how_long(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    password_step(page, live_url, dispatcher)
    right = totp_code(dispatcher)
    enter_code(page, str((int(right) + 1) % 1_000_000).zfill(6))
    refused_on_code_step(page, "That code is not right.")
    screenshot(page, "sign-in-refused-wrong")

    # django-otp pauses code checks after a failure (1 s after the first): even the right code waits.
    network.expect_status(f"{live_url}/account/login/", 429)
    enter_code(page, totp_code(dispatcher))
    refused_on_code_step(page, "Too many wrong codes in a row: code checks are paused for")
    screenshot(page, "sign-in-refused-backoff")

    page.wait_for_timeout(1_500)
    enter_code(page, totp_code(dispatcher))
    signed_in(page, live_url)


def test_a_code_used_once_is_called_already_used(page: Page, live_url: str, dispatcher: User) -> None:
    password_step(page, live_url, dispatcher)
    code = totp_code(dispatcher)
    enter_code(page, code)
    signed_in(page, live_url)
    page.get_by_role("button", name="Sign out").click()

    password_step(page, live_url, dispatcher)
    enter_code(page, code)  # a code seen over a shoulder, or typed twice
    refused_on_code_step(page, "That code has already been used.")
    screenshot(page, "sign-in-refused-replayed")


def test_an_old_code_is_called_expired(page: Page, live_url: str, oncall: User) -> None:
    password_step(page, live_url, oncall)
    enter_code(page, code_steps_from_now(oncall, -3))  # 90 s old: past the one step either side allowed
    refused_on_code_step(page, "That code has expired.")
    screenshot(page, "sign-in-refused-expired")


def test_malformed_input_is_a_form_error_on_the_code_step(page: Page, live_url: str, readonly: User) -> None:
    password_step(page, live_url, readonly)
    for typed, message in (
        ("", "Enter the 6-digit code from your authenticator app."),
        ("12a456", "A code is 6 digits (0-9) only, no letters."),
        ("1234567", "A code has exactly 6 digits; this one has 7."),
    ):
        enter_code(page, typed)
        expect(page.locator(".auth-field-error")).to_have_text(message)
        expect(page.get_by_role("heading", name=CODE_HEADING)).to_be_visible()
    assert TOTPDevice.objects.get(user=readonly).throttling_failure_count == 0  # none of them was a guess
    code = totp_code(readonly)
    enter_code(page, f"{code[:3]} {code[3:]}")  # as the app shows it
    signed_in(page, live_url)


def test_a_second_tab_keeps_the_code_step_and_starting_over_there_is_explained_here(
    page: Page, live_url: str, dispatcher: User, browser_context: BrowserContext, network: NetworkLog
) -> None:
    password_step(page, live_url, dispatcher)

    other = browser_context.new_page()
    network.watch(other)
    other.goto(f"{live_url}/account/login/")
    # Loading the page again does not throw away the sign-in waiting for its code.
    expect(other.get_by_role("heading", name=CODE_HEADING)).to_be_visible()
    other.get_by_role("button", name="Start over").click()
    expect(other.get_by_role("heading", name=PASSWORD_HEADING)).to_be_visible()
    other.close()

    enter_code(page, totp_code(dispatcher))
    expect(page.get_by_role("heading", name=PASSWORD_HEADING)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("This sign-in was no longer waiting for a code")
    screenshot(page, "sign-in-lost")

    page.locator('input[name="auth-username"]').fill(dispatcher.get_username())
    page.locator('input[name="auth-password"]').fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    enter_code(page, totp_code(dispatcher))
    signed_in(page, live_url)
