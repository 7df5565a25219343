"""Two-factor console login: the real two_factor views, real TOTP codes, the OTP gate, the admin."""

from __future__ import annotations

import base64
import re
from binascii import unhexlify
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.events import Actor
from missions.models import AuditEvent
from missions.services import carrier_pause
from tests.conftest import make_user, verified_client
from tms_console.roles import DISPATCHER

PASSWORD = "correct-horse-battery-staple"
LOGIN = "/account/login/"
SETUP = "/account/two_factor/setup/"

# Every console page and the admin: none may answer 200 without a verified code.
GATED_PATHS = [
    "/",
    "/shipments/",
    "/missions/",
    "/carriers/",
    "/map/",
    "/incidents/",
    "/sla/",
    "/admin/",
    "/admin/missions/carrier/",
    "/account/two_factor/",
    "/account/two_factor/backup/tokens/",
]


def code_for(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    """The code an authenticator app would show now (or ``offset_steps`` periods later)."""
    key = unhexlify(device.key.encode())
    value = totp(key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift + offset_steps)
    return str(value).zfill(device.digits)


def password_step(client: Client, username: str, password: str = PASSWORD, next_url: str = "") -> Any:
    url = f"{LOGIN}?next={next_url}" if next_url else LOGIN
    return client.post(
        url,
        {"login_view-current_step": "auth", "auth-username": username, "auth-password": password},
    )


def token_step(client: Client, code: str, next_url: str = "") -> Any:
    url = f"{LOGIN}?next={next_url}" if next_url else LOGIN
    return client.post(url, {"login_view-current_step": "token", "token-otp_token": code})


def is_verified_session(client: Client) -> bool:
    return "otp_device_id" in client.session


# --- Login flow -----------------------------------------------------------------


def test_login_page_renders_with_console_layout_and_no_external_assets(client: Client, db: Any) -> None:
    response = client.get(LOGIN)
    assert response.status_code == 200
    html = response.content.decode()
    assert "css/auth.css" in html
    assert 'name="auth-username"' in html
    # No CDN: every stylesheet/script is served by us.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_full_login_with_password_then_totp_lands_on_dashboard(client: Client, dispatcher: User) -> None:
    response = password_step(client, "dispatcher")
    assert response.status_code == 200
    assert 'name="token-otp_token"' in response.content.decode()
    # The password alone does not log anyone in.
    assert "_auth_user_id" not in client.session

    device = TOTPDevice.objects.get(user=dispatcher)
    response = token_step(client, code_for(device))
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert is_verified_session(client)

    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert b"Dashboard" in dashboard.content


def test_login_honours_a_safe_next_url(client: Client, dispatcher: User) -> None:
    device = TOTPDevice.objects.get(user=dispatcher)
    password_step(client, "dispatcher", next_url="/account/two_factor/")
    response = token_step(client, code_for(device), next_url="/account/two_factor/")
    assert response["Location"] == "/account/two_factor/"


def test_wrong_password_is_refused(client: Client, dispatcher: User) -> None:
    response = password_step(client, "dispatcher", password="nope")
    assert response.status_code == 200
    assert 'name="token-otp_token"' not in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_wrong_code_is_refused(client: Client, dispatcher: User) -> None:
    device = TOTPDevice.objects.get(user=dispatcher)
    password_step(client, "dispatcher")
    good = code_for(device)
    wrong = str((int(good) + 1) % 1_000_000).zfill(6)
    response = token_step(client, wrong)
    assert response.status_code == 200
    assert 'name="token-otp_token"' in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302


def test_a_code_cannot_be_replayed(dispatcher: User) -> None:
    device = TOTPDevice.objects.get(user=dispatcher)
    with time_machine.travel("2026-03-01 12:00:05 +0000", tick=False):
        code = code_for(device)
        first = Client()
        password_step(first, "dispatcher")
        assert token_step(first, code).status_code == 302

        second = Client()
        password_step(second, "dispatcher")
        response = token_step(second, code)
    assert response.status_code == 200
    assert "_auth_user_id" not in second.session


def test_backup_code_works_once(dispatcher: User) -> None:
    static = StaticDevice.objects.create(user=dispatcher, name="backup")
    StaticToken.objects.create(device=static, token="a1b2c3d4")

    first = Client()
    response = password_step(first, "dispatcher")
    assert "Use a backup code" in response.content.decode()
    response = first.post(LOGIN, {"login_view-current_step": "token", "wizard_goto_step": "backup"})
    assert 'name="backup-otp_token"' in response.content.decode()
    response = first.post(LOGIN, {"login_view-current_step": "backup", "backup-otp_token": "a1b2c3d4"})
    assert response.status_code == 302
    assert first.get("/").status_code == 200
    assert not static.token_set.exists()

    second = Client()
    password_step(second, "dispatcher")
    second.post(LOGIN, {"login_view-current_step": "token", "wizard_goto_step": "backup"})
    response = second.post(LOGIN, {"login_view-current_step": "backup", "backup-otp_token": "a1b2c3d4"})
    assert response.status_code == 200
    assert "_auth_user_id" not in second.session
    assert second.get("/").status_code == 302


def test_backup_codes_page_generates_single_use_codes(dispatcher: User) -> None:
    client = verified_client(dispatcher)
    profile = client.get("/account/two_factor/")
    assert profile.status_code == 200
    assert reverse("two_factor:backup_tokens") in profile.content.decode()

    response = client.post(reverse("two_factor:backup_tokens"))
    assert response.status_code == 302
    page = client.get(reverse("two_factor:backup_tokens"))
    tokens = list(StaticToken.objects.filter(device__user=dispatcher).values_list("token", flat=True))
    assert len(tokens) == 10
    for token in tokens:
        assert token in page.content.decode()


def test_logout_ends_the_verified_session(dispatcher: User) -> None:
    client = verified_client(dispatcher)
    assert client.get("/").status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get("/").status_code == 302


# --- The gate ---------------------------------------------------------------------


@pytest.mark.parametrize("path", GATED_PATHS)
def test_anonymous_is_sent_to_login(client: Client, db: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


@pytest.mark.parametrize("path", GATED_PATHS)
def test_password_only_session_reaches_nothing(admin_user: User, path: str) -> None:
    """A session logged in without the code step (force_login) is refused everywhere, admin included."""
    client = Client()
    client.force_login(admin_user)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith((LOGIN, SETUP))
    assert not is_verified_session(client)


@pytest.mark.parametrize("path", GATED_PATHS)
def test_password_step_alone_reaches_nothing(admin_user: User, path: str) -> None:
    client = Client()
    password_step(client, "admin")
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_api_and_oauth_are_not_behind_the_console_gate(client: Client, db: Any) -> None:
    for path in ("/api/v1/", "/oauth2/token/"):
        response = client.get(path)
        location = response.headers.get("Location", "")
        assert not location.startswith((LOGIN, SETUP)), path


def test_two_factor_cannot_be_disabled(dispatcher: User) -> None:
    client = verified_client(dispatcher)
    assert client.get("/account/two_factor/disable/").status_code == 404
    assert client.post("/account/two_factor/disable/", {"understand": "on"}).status_code == 404
    assert TOTPDevice.objects.filter(user=dispatcher).exists()


# --- Enrollment ------------------------------------------------------------------


def test_user_without_device_is_forced_to_enroll_then_reaches_dashboard(db: Any) -> None:
    user = make_user("newcomer", DISPATCHER)
    TOTPDevice.objects.filter(user=user).delete()
    client = Client()

    # Password alone logs a device-less user in, but only as far as enrollment.
    response = password_step(client, "newcomer")
    assert response.status_code == 302
    for path in ("/", "/shipments/", "/admin/", "/account/two_factor/backup/tokens/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(SETUP), path

    page = client.get(SETUP)
    assert page.status_code == 200
    response = client.post(SETUP, {"setup_view-current_step": "welcome"})
    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("two_factor:qr") in html
    assert 'name="generator-token"' in html

    # The QR code is drawn here, as SVG, not fetched from a third party.
    qr = client.get(reverse("two_factor:qr"))
    assert qr.status_code == 200
    assert qr["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in qr.content

    # What the authenticator app reads from the QR code: the base32 secret.
    b32 = client.session["django_two_factor-qr_secret_key"]
    enrolling = TOTPDevice(key=base64.b32decode(b32).hex())
    wrong = str((int(code_for(enrolling)) + 1) % 1_000_000).zfill(6)
    response = client.post(SETUP, {"setup_view-current_step": "generator", "generator-token": wrong})
    assert response.status_code == 200
    assert not TOTPDevice.objects.filter(user=user).exists()

    response = client.post(SETUP, {"setup_view-current_step": "generator", "generator-token": code_for(enrolling)})
    assert response.status_code == 302
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed
    assert device.key == enrolling.key
    assert client.get(response["Location"]).status_code == 200
    assert client.get("/").status_code == 200


# --- Admin -------------------------------------------------------------------------


def test_admin_login_redirects_to_two_factor_login(client: Client, db: Any) -> None:
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_verified_superuser_reaches_the_admin(admin_user: User) -> None:
    client = verified_client(admin_user)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/missions/carrier/").status_code == 200


def test_admin_cannot_edit_or_delete_audit_events(admin_user: User, carrier_a: Any) -> None:
    carrier_pause(carrier_id=carrier_a.pk, actor=Actor.for_user(admin_user), reason="maintenance window")
    event = AuditEvent.objects.get(action="carrier.paused")
    client = verified_client(admin_user)
    base = "/admin/missions/auditevent/"

    assert client.get(base).status_code == 200
    # The change page is view-only: no form fields, no save button.
    view = client.get(f"{base}{event.pk}/change/")
    assert view.status_code == 200
    assert b'name="_save"' not in view.content

    before = AuditEvent.objects.values().get(pk=event.pk)
    assert client.post(f"{base}{event.pk}/change/", {"action": "tampered"}).status_code == 403
    assert client.get(f"{base}{event.pk}/delete/").status_code == 403
    assert client.post(f"{base}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"{base}add/").status_code == 403
    response = client.post(base, {"action": "delete_selected", "_selected_action": [event.pk]})
    assert AuditEvent.objects.values().get(pk=event.pk) == before
    assert response.status_code in (200, 302)


def test_device_that_login_does_not_challenge_still_gives_no_access(db: Any) -> None:
    """two_factor only challenges the device named "default"; the gate must not trust a login that skipped it."""
    user = make_user("oddname", DISPATCHER)
    TOTPDevice.objects.filter(user=user).update(name="phone")
    client = Client()
    password_step(client, "oddname")
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    assert "_auth_user_id" not in client.session


def test_verified_non_staff_user_gets_403_from_the_admin_not_a_login_loop(dispatcher: User) -> None:
    client = verified_client(dispatcher)
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert "You don't have access to this page" in response.content.decode()
