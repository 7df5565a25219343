"""The guard on guessing against live servers, daphne and gunicorn (two worker processes) both.

Failed bearer tokens (per address), client secrets (per client id and
address, and per address) and console passwords (per user and address, and
per address) have small budgets; past them the answer is 429 with
``Retry-After`` (a form error on the console's login page). Each failure is
counted in /metrics and, when it names a known client or user, kept as an
audit event. The same client or user still gets in from another address.
Addresses come through the trusted edge (127.0.0.2) in ``X-Forwarded-For``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from oauth2_provider.models import AccessToken

from missions.models import AuditEvent
from missions.partner.services import IssuedClient
from tests.conftest import make_user
from tests.factories import CarrierFactory
from tests.live import EDGE_ADDRESS, burst, client_from, live_env, metric_value, serve
from tests.partner.conftest import issue_client
from tests.servers import AppServer as LiveApp

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery-staple"  # tests.conftest.make_user's
METRICS_TOKEN = "live-metrics-token-guard"
BEARER_BUDGET, SECRET_BUDGET, PASSWORD_BUDGET, ADDRESS_BUDGET = 5, 3, 3, 8
GUARD_ENV = {
    "API_RATE_LIMIT": "10000/h",
    "AUTH_GUARD_BEARER_PER_ADDRESS": f"{BEARER_BUDGET}/h",
    "AUTH_GUARD_SECRET_PER_CLIENT": f"{SECRET_BUDGET}/h",
    "AUTH_GUARD_PASSWORD_PER_USER": f"{PASSWORD_BUDGET}/h",
    "AUTH_GUARD_PER_ADDRESS": f"{ADDRESS_BUDGET}/h",
    "PARTNER_TRUSTED_PROXIES": f"{EDGE_ADDRESS}/32",
    "METRICS_TOKEN": METRICS_TOKEN,
}


@pytest.fixture(scope="module", params=["daphne", "gunicorn"])
def app(
    request: pytest.FixtureRequest, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[LiveApp]:
    tmp = tmp_path_factory.mktemp(f"guard-{request.param}")
    with django_db_blocker.unblock():
        env = live_env(request.param, tmp, **GUARD_ENV)
    with serve(request.param, env, tmp / "server.log") as live:
        yield live


def _address() -> str:
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def _metrics(app: LiveApp) -> str:
    with client_from(app) as http:
        return http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text


def _failures(app: LiveApp, kind: str) -> tuple[float, float]:
    text = _metrics(app)
    return (
        metric_value(text, "tms_auth_failures_total", kind=kind),
        metric_value(text, "tms_auth_guard_refusals_total", kind=kind),
    )


def assert_guard_refusal(response: httpx.Response, policy: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/too-many-failures")
    assert body["violated-policies"] == [policy]
    assert int(response.headers["Retry-After"]) >= 1


def _token_request(http: httpx.Client, issued: IssuedClient, secret: str, address: str) -> httpx.Response:
    return http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client_id, secret),
        headers=_from(address),
    )


@pytest.fixture
def issued() -> IssuedClient:
    return issue_client(CarrierFactory(slug=f"guard-{random.randrange(10**9)}"))


# --- Bearer tokens ---------------------------------------------------------------------------


def test_wrong_bearer_tokens_from_one_address_are_refused_past_the_budget(app: LiveApp, issued: IssuedClient) -> None:
    attacker, elsewhere = _address(), _address()
    failures_before, refusals_before = _failures(app, "bearer_token")
    responses = burst(
        app,
        4 * BEARER_BUDGET,
        lambda http, i: http.get(
            "/api/v1/capabilities", headers={"Authorization": f"Bearer guess-{i}", **_from(attacker)}
        ),
        source=EDGE_ADDRESS,
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * BEARER_BUDGET + [429] * (3 * BEARER_BUDGET)
    for response in responses:
        if response.status_code == 429:
            assert_guard_refusal(response, "bearer-failures")
    failures_after, refusals_after = _failures(app, "bearer_token")
    assert (failures_after - failures_before, refusals_after - refusals_before) == (BEARER_BUDGET, 3 * BEARER_BUDGET)

    # A real token is not a guess: the client is served, from the attacker's address as from its own.
    with client_from(app, EDGE_ADDRESS) as http:
        token = _token_request(http, issued, issued.client_secret, elsewhere).json()["access_token"]
        for address in (attacker, elsewhere):
            ok = http.get("/api/v1/capabilities", headers={"Authorization": f"Bearer {token}", **_from(address)})
            assert ok.status_code == 200, ok.text


def test_an_expired_token_of_a_known_client_is_an_audit_event(app: LiveApp, issued: IssuedClient) -> None:
    with client_from(app, EDGE_ADDRESS) as http:
        token = _token_request(http, issued, issued.client_secret, _address()).json()["access_token"]
        AccessToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
        response = http.get("/api/v1/capabilities", headers={"Authorization": f"Bearer {token}", **_from(_address())})
    assert response.status_code == 401
    event = AuditEvent.objects.get(action="security.bearer_token_failed")
    assert (event.subject_type, event.subject_id, event.actor_kind) == ("partner_client", issued.client.pk, "system")
    assert event.carrier_id == issued.client.carrier_id
    assert event.data["reason"] == "The access token expired."


# --- Client secrets at the token endpoint ----------------------------------------------------


def test_wrong_client_secrets_are_refused_past_the_budget_but_not_from_elsewhere(
    app: LiveApp, issued: IssuedClient
) -> None:
    attacker, elsewhere = _address(), _address()
    responses = burst(
        app, 10, lambda http, i: _token_request(http, issued, f"wrong-{i}", attacker), source=EDGE_ADDRESS
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * SECRET_BUDGET + [429] * (10 - SECRET_BUDGET)
    for response in responses:
        if response.status_code == 401:
            assert response.json()["error"] == "invalid_client"
        else:
            assert_guard_refusal(response, "secret-failures")
    audited = AuditEvent.objects.filter(action="security.client_secret_failed", subject_id=issued.client.pk)
    assert audited.count() == SECRET_BUDGET
    assert {e.data["client_address"] for e in audited} == {attacker}

    with client_from(app, EDGE_ADDRESS) as http:
        # The right secret does not work from the attacker's address any more...
        assert_guard_refusal(_token_request(http, issued, issued.client_secret, attacker), "secret-failures")
        # ...and the client itself, elsewhere, is not locked out.
        response = _token_request(http, issued, issued.client_secret, elsewhere)
    assert response.status_code == 200, response.text


def test_one_address_trying_many_client_ids_meets_the_address_budget(app: LiveApp) -> None:
    attacker = _address()
    with client_from(app, EDGE_ADDRESS) as http:
        statuses = [
            http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(f"no-such-client-{i}", "x"),
                headers=_from(attacker),
            ).status_code
            for i in range(ADDRESS_BUDGET + 3)
        ]
    assert statuses == [401] * ADDRESS_BUDGET + [429] * 3
    assert not AuditEvent.objects.filter(action="security.client_secret_failed").exists()  # no subject: log only


# --- Console passwords -----------------------------------------------------------------------


class Browser:
    """A console visitor behind the edge at one address, with its own cookies (CSRF, session)."""

    def __init__(self, app: LiveApp, address: str) -> None:
        self.http = client_from(app, EDGE_ADDRESS, headers=_from(address))

    def password_step(self, username: str, password: str) -> httpx.Response:
        if "csrftoken" not in self.http.cookies:
            self.http.get("/account/login/")
        return self.http.post(
            "/account/login/",
            data={
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
                "login_view-current_step": "auth",
                "auth-username": username,
                "auth-password": password,
            },
        )

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def user() -> User:
    return make_user(f"guarded-{random.randrange(10**9)}", None)


def test_wrong_passwords_are_refused_past_the_budget_but_not_from_elsewhere(app: LiveApp, user: User) -> None:
    attacker, home = Browser(app, _address()), Browser(app, _address())
    failures_before, refusals_before = _failures(app, "password")
    try:
        answers = [attacker.password_step(user.username, f"guess-{i}") for i in range(PASSWORD_BUDGET + 2)]
        for answer in answers[:PASSWORD_BUDGET]:
            assert answer.status_code == 200
            assert "Please enter a correct username and password" in answer.text
        for answer in answers[PASSWORD_BUDGET:]:
            assert answer.status_code == 429
            assert "Too many failed sign-in attempts" in answer.text  # a form error, not an error page
            assert int(answer.headers["Retry-After"]) >= 1
        # The right password is refused from there too, while the budget is spent...
        assert attacker.password_step(user.username, PASSWORD).status_code == 429
        # ...but the user signs in from elsewhere and reaches the one-time-code step.
        ok = home.password_step(user.username, PASSWORD)
        assert ok.status_code == 200 and 'name="token-otp_token"' in ok.text
    finally:
        attacker.close()
        home.close()
    audited = AuditEvent.objects.filter(action="security.password_failed", subject_type="user", subject_id=user.pk)
    assert audited.count() == PASSWORD_BUDGET
    failures_after, refusals_after = _failures(app, "password")
    assert (failures_after - failures_before, refusals_after - refusals_before) == (PASSWORD_BUDGET, 3)


def test_a_burst_of_wrong_passwords_spends_exactly_the_budget(app: LiveApp, user: User) -> None:
    attacker, count = _address(), 12

    def guess(http: httpx.Client, i: int) -> httpx.Response:
        return http.post(
            "/account/login/",
            data={
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
                "login_view-current_step": "auth",
                "auth-username": user.username,
                "auth-password": f"guess-{i}",
            },
            headers=_from(attacker),
        )

    responses = burst(app, count, guess, source=EDGE_ADDRESS, warm="/account/login/")
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * PASSWORD_BUDGET + [429] * (count - PASSWORD_BUDGET)
    audited = AuditEvent.objects.filter(action="security.password_failed", subject_id=user.pk)
    assert audited.count() == PASSWORD_BUDGET
