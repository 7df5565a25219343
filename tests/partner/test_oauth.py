"""OAuth2 client credentials (RFC 6749 §4.4, §5.2) and bearer-token errors (RFC 6750 §3.1)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from missions.events import Actor
from missions.models import Carrier
from missions.partner import services as partner_services
from missions.partner.services import IssuedClient
from tests.partner.conftest import api_client, assert_problem, fetch_token, issue_client

pytestmark = pytest.mark.django_db


def _token_request(issued: IssuedClient, data: dict[str, str], secret: str | None = None) -> object:
    basic = base64.b64encode(f"{issued.client_id}:{secret or issued.client_secret}".encode()).decode()
    return Client().post("/oauth2/token", data, HTTP_AUTHORIZATION=f"Basic {basic}")


def _oauth_error(response: object, status: int, error: str) -> None:
    # RFC 6749 §5.2: a JSON object with an "error" code, never cached.
    assert response.status_code == status, response.content  # type: ignore[attr-defined]
    assert response["Content-Type"].startswith("application/json")  # type: ignore[index]
    assert response.json()["error"] == error  # type: ignore[attr-defined]
    assert response["Cache-Control"] == "no-store"  # type: ignore[index]


def test_token_is_short_lived_without_refresh_token(partner_a: IssuedClient) -> None:
    token = fetch_token(partner_a)
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] <= 900
    assert "refresh_token" not in token
    stored = AccessToken.objects.get(application__client_id=partner_a.client_id)
    assert stored.expires <= timezone.now() + timedelta(seconds=900)


def test_client_secret_is_stored_hashed(partner_a: IssuedClient) -> None:
    application = Application.objects.get(client_id=partner_a.client_id)
    assert application.client_secret != partner_a.client_secret
    assert partner_a.client_secret not in application.client_secret


def test_wrong_secret_is_invalid_client(partner_a: IssuedClient) -> None:
    _oauth_error(_token_request(partner_a, {"grant_type": "client_credentials"}, secret="nope"), 401, "invalid_client")


def test_other_grant_types_are_refused(partner_a: IssuedClient) -> None:
    response = _token_request(partner_a, {"grant_type": "password", "username": "u", "password": "p"})
    assert response.status_code == 400  # type: ignore[attr-defined]
    # oauthlib checks the (bogus) user first; either way no token is issued.
    assert response.json()["error"] in ("invalid_grant", "unauthorized_client")  # type: ignore[attr-defined]
    assert "access_token" not in response.json()  # type: ignore[attr-defined]
    _oauth_error(
        _token_request(partner_a, {"grant_type": "refresh_token", "refresh_token": "x"}), 400, "unauthorized_client"
    )
    _oauth_error(_token_request(partner_a, {"grant_type": "magic"}), 400, "unsupported_grant_type")


def test_scope_outside_the_clients_grant_is_invalid_scope(carrier_a: Carrier) -> None:
    narrow = issue_client(carrier_a, scopes="tender:read")
    _oauth_error(
        _token_request(narrow, {"grant_type": "client_credentials", "scope": "tender:write"}), 400, "invalid_scope"
    )
    _oauth_error(_token_request(narrow, {"grant_type": "client_credentials", "scope": "admin"}), 400, "invalid_scope")


def test_missing_grant_type_is_unsupported_grant_type(partner_a: IssuedClient) -> None:
    _oauth_error(_token_request(partner_a, {}), 400, "unsupported_grant_type")


def test_application_without_carrier_gets_no_token() -> None:
    raw = "s3cret-value-for-an-unbound-app"
    app = Application.objects.create(
        name="unbound",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=raw,
    )
    basic = base64.b64encode(f"{app.client_id}:{raw}".encode()).decode()
    response = Client().post("/oauth2/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


def test_no_token_is_401_with_bare_bearer_challenge(client: Client) -> None:
    response = client.get("/api/v1/capabilities")
    assert_problem(response, 401, "authentication-required")
    # RFC 6750 §3.1: without credentials the challenge carries no error code.
    assert response["WWW-Authenticate"].startswith("Bearer realm=")
    assert "error=" not in response["WWW-Authenticate"]


def test_unknown_token_is_401_invalid_token(db: object) -> None:
    response = api_client("not-a-real-token").get("/api/v1/capabilities")
    assert_problem(response, 401, "invalid-token")
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_malformed_authorization_header_is_401(client: Client) -> None:
    response = client.get("/api/v1/capabilities", HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==")
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_expired_token_is_401_invalid_token(partner_a: IssuedClient) -> None:
    token = fetch_token(partner_a)["access_token"]
    with time_machine.travel(timezone.now() + timedelta(seconds=901), tick=False):
        response = api_client(token).get("/api/v1/capabilities")
    assert_problem(response, 401, "invalid-token")
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert "expired" in response["WWW-Authenticate"]


def test_missing_scope_is_403_insufficient_scope(partner_a: IssuedClient) -> None:
    token = fetch_token(partner_a, scope="missions:read")["access_token"]
    response = api_client(token).get("/api/v1/tenders")
    body = assert_problem(response, 403, "insufficient-scope")
    assert body["required_scope"] == "tender:read"
    expected = 'Bearer realm="tms-partner-api", error="insufficient_scope", scope="tender:read"'
    assert response["WWW-Authenticate"] == expected


def test_rotation_revokes_tokens_and_old_secret(partner_a: IssuedClient) -> None:
    token = fetch_token(partner_a)["access_token"]
    rotated = partner_services.partner_client_rotate_secret(client_id=partner_a.client.pk, actor=Actor.system("t"))
    assert rotated.client_secret != partner_a.client_secret
    assert_problem(api_client(token).get("/api/v1/capabilities"), 401, "invalid-token")
    _oauth_error(_token_request(partner_a, {"grant_type": "client_credentials"}), 401, "invalid_client")
    assert fetch_token(rotated)["access_token"]


def test_revoke_endpoint_revokes_the_token(partner_a: IssuedClient) -> None:
    token = fetch_token(partner_a)["access_token"]
    basic = base64.b64encode(f"{partner_a.client_id}:{partner_a.client_secret}".encode()).decode()
    response = Client().post("/oauth2/revoke", {"token": token}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200
    assert_problem(api_client(token).get("/api/v1/capabilities"), 401, "invalid-token")
