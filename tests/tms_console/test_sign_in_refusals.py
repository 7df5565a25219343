"""The code step says why it refused: wrong, used, expired, early, backing off, malformed; a lost sign-in says so.

Real two_factor views, real TOTP codes (time frozen with time-machine where a
code's time step matters), the real django-otp back-off.
"""

from __future__ import annotations

import html
import re
import time
from binascii import unhexlify
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tms_console.login import CodeRefusal, OneTimeCodeField, totp_refusal

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"
LOGIN = "/account/login/"
# Frozen test clocks start 5 s into a 30 s time step, near the real time (so sessions stay unexpired).
NOW = datetime.fromtimestamp(int(time.time()) // 30 * 30 + 5, UTC)


def code_for(device: TOTPDevice, *, steps_from_now: int = 0) -> str:
    key = unhexlify(device.key.encode())
    value = totp(key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift + steps_from_now)
    return str(value).zfill(device.digits)


def password_step(client: Client, username: str = "dispatcher") -> Any:
    response = client.post(
        LOGIN, {"login_view-current_step": "auth", "auth-username": username, "auth-password": PASSWORD}
    )
    assert 'name="token-otp_token"' in response.content.decode(), "the password step did not lead to the code step"
    return response


def code_step(client: Client, code: str, *, step: str = "token") -> Any:
    return client.post(LOGIN, {"login_view-current_step": step, f"{step}-otp_token": code})


def page_text(response: Any) -> str:
    """The page's text with tags dropped and whitespace folded (messages are checked as a person reads them)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def on_code_step(response: Any) -> bool:
    html = response.content.decode()
    return 'name="token-otp_token"' in html and "<h1>One-time code</h1>" in html


def on_password_step(response: Any) -> bool:
    html = response.content.decode()
    return 'name="auth-username"' in html and "<h1>Sign in</h1>" in html


def refusal_codes(response: Any) -> set[str]:
    form = response.context["wizard"]["form"]
    return {e.code for errors in form.errors.as_data().values() for e in errors}


def signed_in(client: Client) -> bool:
    """A session verified with a code (read while the test's clock is still where the sign-in happened)."""
    return "otp_device_id" in client.session


@pytest.fixture
def device(dispatcher: User) -> TOTPDevice:
    return TOTPDevice.objects.get(user=dispatcher)


# --- Refused codes: the reason, on the code step --------------------------------------------------


def test_a_wrong_code_is_called_wrong_on_the_code_step(client: Client, device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        password_step(client)
        right = code_for(device)
        wrong = str((int(right) + 1) % 1_000_000).zfill(6)
        response = code_step(client, wrong)
    assert response.status_code == 200
    assert on_code_step(response)
    assert refusal_codes(response) == {CodeRefusal.WRONG}
    assert "That code is not right." in page_text(response)
    assert not signed_in(client)
    device.refresh_from_db()
    assert device.throttling_failure_count == 1  # django-otp's back-off still counts it


def test_a_used_code_is_called_already_used(device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        code = code_for(device)
        first = Client()
        password_step(first)
        assert code_step(first, code).status_code == 302
        assert signed_in(first)

        second = Client()
        password_step(second)
        response = code_step(second, code)
    assert on_code_step(response)
    assert refusal_codes(response) == {CodeRefusal.REPLAYED}
    assert "That code has already been used." in page_text(response)
    assert not signed_in(second)


def test_an_old_code_is_called_expired(client: Client, device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        password_step(client)
        response = code_step(client, code_for(device, steps_from_now=-3))  # 90 s old: past the tolerance of 1
    assert on_code_step(response)
    assert refusal_codes(response) == {CodeRefusal.EXPIRED}
    assert "That code has expired." in page_text(response)
    assert not signed_in(client)


def test_a_code_from_a_clock_running_ahead_is_called_not_valid_yet(client: Client, device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        password_step(client)
        response = code_step(client, code_for(device, steps_from_now=4))
    assert on_code_step(response)
    assert refusal_codes(response) == {CodeRefusal.EARLY}
    assert "your phone's clock is ahead" in page_text(response)


def test_codes_one_step_either_side_are_still_accepted(device: TOTPDevice) -> None:
    for minute, offset in ((10, -1), (20, 1)):  # each at its own time: a time step is accepted once
        with time_machine.travel(NOW + timedelta(minutes=minute), tick=False):
            device.refresh_from_db()  # an accepted code moves the device's drift (django-otp's OTP_TOTP_SYNC)
            client = Client()
            password_step(client)
            assert code_step(client, code_for(device, steps_from_now=offset)).status_code == 302
            assert signed_in(client)


def test_the_back_off_refuses_even_the_right_code_and_says_how_long(client: Client, device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        password_step(client)
        right = code_for(device)
        code_step(client, str((int(right) + 1) % 1_000_000).zfill(6))  # django-otp now pauses checks for 1 s
        response = code_step(client, right)
        assert response.status_code == 429
        assert response["Retry-After"] == "1"
        assert on_code_step(response)
        assert refusal_codes(response) == {"too_many_attempts"}
        assert "Too many wrong codes in a row: code checks are paused for 1 more second(s)." in page_text(response)
        assert not signed_in(client)
        device.refresh_from_db()
        assert device.throttling_failure_count == 1  # a refusal while paused is not another guess

        clock.shift(1)
        response = code_step(client, right)
    assert response.status_code == 302
    assert signed_in(client)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter the 6-digit code from your authenticator app."),
        ("   ", "Enter the 6-digit code from your authenticator app."),
        ("12a456", "A code is 6 digits (0-9) only, no letters."),
        ("abcdef", "A code is 6 digits (0-9) only, no letters."),
        ("１２３４５６", "A code is 6 digits (0-9) only, no letters."),  # full-width digits
        ("1234567", "A code has exactly 6 digits; this one has 7."),
        ("12345", "A code has exactly 6 digits; this one has 5."),
        ("1" * 5000, "A code has exactly 6 digits; this one has 5000."),
    ],
)
def test_malformed_input_is_a_form_error_and_no_guess(
    client: Client, device: TOTPDevice, typed: str, message: str
) -> None:
    password_step(client)
    response = code_step(client, typed)
    assert response.status_code == 200
    assert on_code_step(response)
    assert message in page_text(response)
    form = response.context["wizard"]["form"]
    assert list(form.errors) == ["otp_token"]  # a field error only: no "wrong code" on top
    device.refresh_from_db()
    assert device.throttling_failure_count == 0
    assert not signed_in(client)


def test_a_code_typed_with_the_space_the_app_shows_is_accepted(client: Client, device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        password_step(client)
        code = code_for(device)
        response = code_step(client, f" {code[:3]} {code[3:]} ")
    assert response.status_code == 302
    assert signed_in(client)


def test_a_wrong_backup_code_is_explained(client: Client, dispatcher: User) -> None:
    static = StaticDevice.objects.create(user=dispatcher, name="backup")
    StaticToken.objects.create(device=static, token="a1b2c3d4")
    password_step(client)
    client.post(LOGIN, {"login_view-current_step": "token", "wizard_goto_step": "backup"})
    response = code_step(client, "zzzz9999", step="backup")
    assert response.status_code == 200
    assert 'name="backup-otp_token"' in response.content.decode()
    assert refusal_codes(response) == {"backup_code_unknown"}
    assert "That is not one of your unused backup codes" in page_text(response)
    empty = code_step(client, "", step="backup")
    assert "Enter one of your backup codes." in page_text(empty)


# --- A sign-in that can no longer take a code -----------------------------------------------------


def test_loading_the_login_page_again_keeps_the_sign_in_waiting_for_its_code(
    client: Client, device: TOTPDevice
) -> None:
    """What broke sign-in in Chromium: its favicon request, sent to the login page, reset the wizard."""
    with time_machine.travel(NOW, tick=False):
        password_step(client)
        again = client.get(f"{LOGIN}?next=/favicon.ico")
        assert again.status_code == 200
        assert on_code_step(again)
        response = code_step(client, code_for(device))
    assert response.status_code == 302
    assert signed_in(client)


def test_start_over_still_starts_over(client: Client, device: TOTPDevice) -> None:
    password_step(client)
    response = client.post(LOGIN, {"login_view-current_step": "token", "wizard_goto_step": "auth"})
    assert on_password_step(response)
    assert "no longer waiting for a code" not in page_text(response)
    assert on_password_step(client.get(LOGIN))


def test_a_code_for_a_sign_in_started_over_elsewhere_gets_the_reason_not_a_blank_form(
    client: Client, device: TOTPDevice
) -> None:
    with time_machine.travel(NOW, tick=False):
        password_step(client)
        # Another tab of the same browser clicks "Start over".
        client.post(LOGIN, {"login_view-current_step": "token", "wizard_goto_step": "auth"})
        response = code_step(client, code_for(device))
    assert response.status_code == 200
    assert on_password_step(response)
    assert refusal_codes(response) == {"lost"}
    assert "This sign-in was no longer waiting for a code" in page_text(response)
    assert not signed_in(client)
    device.refresh_from_db()
    assert device.last_t == -1  # the code was not spent


def test_a_code_posted_without_any_sign_in_in_the_session_gets_the_reason(client: Client, device: TOTPDevice) -> None:
    response = code_step(client, code_for(device))
    assert on_password_step(response)
    assert "This sign-in was no longer waiting for a code" in page_text(response)
    assert not signed_in(client)


def test_a_code_after_the_sign_in_timed_out_says_so(client: Client, device: TOTPDevice, settings: Any) -> None:
    settings.TWO_FACTOR_LOGIN_TIMEOUT = 600
    with time_machine.travel(NOW, tick=False) as clock:
        password_step(client)
        clock.shift(601)
        response = code_step(client, code_for(device))
    assert response.status_code == 200
    assert on_password_step(response)
    assert refusal_codes(response) == {"timed_out"}
    assert "Your password was accepted more than 10 minute(s) ago" in page_text(response)
    assert "Your session has timed out" not in page_text(response)  # two_factor's own note gives way
    assert not signed_in(client)


def test_after_a_lost_sign_in_the_password_and_a_code_still_work(client: Client, device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        code_step(client, "123456")
        password_step(client)
        assert code_step(client, code_for(device)).status_code == 302
    assert signed_in(client)


# --- The classification itself -------------------------------------------------------------------


def test_totp_refusal_by_distance_from_now(device: TOTPDevice) -> None:
    with time_machine.travel(NOW, tick=False):
        now = timezone.now().timestamp()
        assert totp_refusal(device, code_for(device), now=now) == CodeRefusal.REPLAYED
        assert totp_refusal(device, code_for(device, steps_from_now=-1), now=now) == CodeRefusal.REPLAYED
        assert totp_refusal(device, code_for(device, steps_from_now=-2), now=now) == CodeRefusal.EXPIRED
        assert totp_refusal(device, code_for(device, steps_from_now=-20), now=now) == CodeRefusal.EXPIRED
        assert totp_refusal(device, code_for(device, steps_from_now=2), now=now) == CodeRefusal.EARLY
        assert totp_refusal(device, "not a code", now=now) == CodeRefusal.WRONG


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_the_code_field_accepts_exactly_six_digits_and_explains_anything_else(typed: str) -> None:
    field = OneTimeCodeField(digits=6)
    compact = "".join(typed.split())
    try:
        value = field.clean(typed)
    except ValidationError as error:
        assert error.messages  # refused, and says why
        assert not (len(compact) == 6 and compact.isascii() and compact.isdigit())
    else:
        assert value == compact
        assert len(value) == 6 and value.isascii() and value.isdigit()
