"""The guard on guessing, in process: budgets, refunds, the login form's error, the audit trail.

The same behaviour against live daphne and gunicorn servers, with bursts, is
in ``test_auth_guard_live.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from missions.models import AuditEvent
from tests.conftest import make_user
from tms_console import auth_guard
from tms_console.auth_guard import GuardKind, GuessRefused, SecurityEvent, attempt_begin, security_failure_record

pytestmark = pytest.mark.django_db
LOGIN = "/account/login/"
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _small_budgets(settings: Any) -> None:
    settings.AUTH_GUARD_PASSWORD_PER_USER = "2/h"
    settings.AUTH_GUARD_SECRET_PER_CLIENT = "2/h"
    settings.AUTH_GUARD_PER_ADDRESS = "4/h"
    settings.AUTH_GUARD_BEARER_PER_ADDRESS = "3/h"


def test_a_right_credential_costs_nothing() -> None:
    for _ in range(10):
        attempt_begin(kind=GuardKind.PASSWORD, identity="ann", address="203.0.113.1").succeeded()


def test_failures_spend_the_budget_of_the_identity_at_that_address_only() -> None:
    for _ in range(2):
        attempt_begin(kind=GuardKind.PASSWORD, identity="ann", address="203.0.113.1").failed(reason="wrong")
    with pytest.raises(GuessRefused) as refused:
        attempt_begin(kind=GuardKind.PASSWORD, identity="ANN", address="203.0.113.1")  # case buys nothing
    assert refused.value.decision.policy.name == "password-failures"
    assert refused.value.retry_after > 0
    # Another address, or another user at that address, still has a budget.
    attempt_begin(kind=GuardKind.PASSWORD, identity="ann", address="198.51.100.1").succeeded()
    attempt_begin(kind=GuardKind.PASSWORD, identity="bob", address="203.0.113.1").succeeded()


def test_the_address_budget_stops_one_address_trying_many_identities() -> None:
    for name in ("a", "b", "c", "d"):
        attempt_begin(kind=GuardKind.CLIENT_SECRET, identity=name, address="203.0.113.2").failed(reason="wrong")
    with pytest.raises(GuessRefused) as refused:
        attempt_begin(kind=GuardKind.CLIENT_SECRET, identity="e", address="203.0.113.2")
    assert refused.value.decision.policy.name == "secret-failures-address"
    # The refusal reserved nothing: the identity's own budget is untouched.
    attempt_begin(kind=GuardKind.CLIENT_SECRET, identity="e", address="198.51.100.2").succeeded()


def test_a_recorder_that_fails_does_not_fail_the_request(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_event: SecurityEvent) -> None:
        raise RuntimeError("audit store down")

    auth_guard.security_recorder_register(broken)
    try:
        caplog.set_level(logging.INFO, logger="tms_console")
        security_failure_record(SecurityEvent(kind=GuardKind.PASSWORD, address="203.0.113.3", identity="x", reason="r"))
    finally:
        auth_guard.security_recorder_unregister(broken)
    assert any(r.name == "tms_console.security" and r.getMessage() == "authentication failed" for r in caplog.records)
    assert any("security event not recorded" in r.getMessage() for r in caplog.records)


def _password(client: Client, username: str, password: str, address: str) -> Any:
    return client.post(
        LOGIN,
        {"login_view-current_step": "auth", "auth-username": username, "auth-password": password},
        REMOTE_ADDR=address,
    )


def test_the_login_form_says_so_with_a_429_and_keeps_the_user_in_from_elsewhere() -> None:
    user: User = make_user("guarded", None)
    attacker = Client()
    for _ in range(2):
        response = _password(attacker, "guarded", "nope", "203.0.113.9")
        assert response.status_code == 200
    refused = _password(attacker, "guarded", PASSWORD, "203.0.113.9")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many failed sign-in attempts from this address" in refused.content.decode()
    assert 'name="auth-username"' in refused.content.decode()  # the login page, not an error page
    ok = _password(Client(), "guarded", PASSWORD, "198.51.100.9")
    assert ok.status_code == 200 and 'name="token-otp_token"' in ok.content.decode()
    events = AuditEvent.objects.filter(action="security.password_failed", subject_type="user", subject_id=user.pk)
    assert events.count() == 2
    assert events.first().data == {"client_address": "203.0.113.9", "identity": "guarded", "reason": "wrong password"}


def test_an_unknown_user_is_logged_not_audited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tms_console.security")
    assert _password(Client(), "nobody-here", "nope", "203.0.113.10").status_code == 200
    assert not AuditEvent.objects.filter(action__startswith="security.").exists()
    (record,) = [r for r in caplog.records if r.name == "tms_console.security"]
    assert (record.security_event, record.client_address, record.reason) == (  # type: ignore[attr-defined]
        "password_failed",
        "203.0.113.10",
        "unknown user",
    )


def test_an_empty_password_is_not_a_guess() -> None:
    make_user("guarded", None)
    for _ in range(5):
        assert _password(Client(), "guarded", "", "203.0.113.11").status_code == 200
    assert _password(Client(), "guarded", PASSWORD, "203.0.113.11").status_code == 200
