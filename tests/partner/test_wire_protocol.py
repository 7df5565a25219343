"""What goes over the wire, against daphne and gunicorn: exact replays, Accept for problems, no-store, OAuth.

Each test runs once per server (``app_server``): daphne as ``make run``
serves, gunicorn as the partner ingest path runs (with the webhook fast
path in front of Django). Requests are made by ``requests``, a client no one
here wrote, and compared as bytes where the point is about bytes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from missions.events import Actor
from missions.models import Carrier, Mission, MissionException, Tender
from missions.partner import services as partner_services
from missions.partner.api.webhooks import webhook_sign
from missions.partner.services import IssuedClient
from tests.factories import CarrierFactory, MissionFactory, VehicleFactory
from tests.partner.test_isolation import telemetry_event
from tests.servers import AppServer

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEM = "application/problem+json"


@dataclass
class Api:
    """A partner client talking to one live server."""

    server: AppServer
    issued: IssuedClient
    token: str

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def get(self, path: str, **headers: str) -> requests.Response:
        return requests.get(self.url(path), headers={"Authorization": f"Bearer {self.token}", **headers}, timeout=30)

    def post(self, path: str, body: bytes, *, key: str | None = None, **headers: str) -> requests.Response:
        sent = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", **headers}
        if key is not None:
            sent["Idempotency-Key"] = key
        return requests.post(self.url(path), data=body, headers=sent, timeout=30)


def _basic(issued: IssuedClient, secret: str | None = None) -> str:
    raw = f"{issued.client_id}:{issued.client_secret if secret is None else secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _token(server: AppServer, issued: IssuedClient, path: str = "/oauth2/token") -> requests.Response:
    return requests.post(
        f"{server.url}{path}",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": _basic(issued)},
        timeout=30,
    )


@pytest.fixture
def api(app_server: AppServer, partner_a: IssuedClient) -> Api:
    response = _token(app_server, partner_a)
    assert response.status_code == 200, response.text
    return Api(server=app_server, issued=partner_a, token=response.json()["access_token"])


# --- Idempotent replays are the first answer, byte for byte ----------------------------------------------------

# Every mutating endpoint, once with a body it accepts and once with one it refuses (a stored problem).
MUTATIONS: list[tuple[str, str, Callable[[Mission], Any], int]] = [
    ("offer", "/api/v1/tenders/{tender}/offers", lambda m: {"kind": "counter", "price_usd": "1500.00"}, 201),
    ("offer-refused", "/api/v1/tenders/{tender}/offers", lambda m: {"kind": "haggle"}, 400),
    ("status", "/api/v1/missions/{mission}/status", lambda m: {"status": "en_route", "reason": "left the yard"}, 200),
    ("status-refused", "/api/v1/missions/{mission}/status", lambda m: {"status": "completed"}, 409),
    ("autonomy", "/api/v1/missions/{mission}/autonomy-mode", lambda m: {"mode": "supervised", "reason": "rain"}, 200),
    ("autonomy-refused", "/api/v1/missions/{mission}/autonomy-mode", lambda m: {"mode": "warp"}, 400),
    (
        "exception",
        "/api/v1/missions/{mission}/exceptions",
        lambda m: {"kind": "lost_comms", "detail": "no uplink for 40 s", "data": {"z": 1, "a": [3, 2], "m": None}},
        201,
    ),
    ("exception-refused", "/api/v1/missions/{mission}/exceptions", lambda m: {"kind": "gremlins"}, 400),
    ("telemetry", "/api/v1/telemetry", lambda m: telemetry_event(m), 202),
    ("telemetry-refused", "/api/v1/telemetry", lambda m: {**telemetry_event(m), "position": "north"}, 400),
    ("batch", "/api/v1/telemetry/batch", lambda m: {"events": [telemetry_event(m), telemetry_event(m)]}, 202),
    ("batch-refused", "/api/v1/telemetry/batch", lambda m: {"events": []}, 400),
]


@pytest.mark.parametrize(("path", "body_of", "status"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_replay_is_the_first_answer_byte_for_byte(
    api: Api, tender_a: Tender, mission_a: Mission, path: str, body_of: Callable[[Mission], Any], status: int
) -> None:
    url = path.format(tender=tender_a.pk, mission=mission_a.pk)
    body = json.dumps(body_of(mission_a)).encode()
    key = str(uuid.uuid4())
    first = api.post(url, body, key=key)
    assert first.status_code == status, first.text
    replay = api.post(url, body, key=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert replay.status_code == first.status_code
    assert replay.headers["Content-Type"] == first.headers["Content-Type"]
    assert replay.headers.get("Location") == first.headers.get("Location")
    assert replay.content == first.content
    expected_type = "application/json" if status < 400 else PROBLEM
    assert first.headers["Content-Type"] == expected_type


def test_a_replay_under_another_accept_is_still_the_first_answer(api: Api, mission_a: Mission) -> None:
    url = f"/api/v1/missions/{mission_a.pk}/exceptions"
    body = json.dumps({"kind": "lost_comms", "detail": "first"}).encode()
    key = str(uuid.uuid4())
    first = api.post(url, body, key=key, Accept="application/json; indent=2")
    replay = api.post(url, body, key=key, Accept=PROBLEM)
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    assert b"\n  " in first.content  # the first answer was indented; the replay repeats it
    assert MissionException.objects.count() == 1


# --- Errors honour Accept: application/problem+json --------------------------------------------------------------


@pytest.mark.parametrize("accept", [PROBLEM, f"{PROBLEM}, application/json", f"application/json;q=0.5, {PROBLEM}"])
def test_errors_keep_their_status_under_accept_problem_json(api: Api, mission_a: Mission, accept: str) -> None:
    missing = api.get("/api/v1/tenders/999999999", Accept=accept)
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, PROBLEM)
    assert missing.json()["status"] == 404
    unauthenticated = requests.get(api.url("/api/v1/capabilities"), headers={"Accept": accept}, timeout=30)
    assert (unauthenticated.status_code, unauthenticated.headers["Content-Type"]) == (401, PROBLEM)
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")
    illegal = api.post(
        f"/api/v1/missions/{mission_a.pk}/status", b'{"status": "completed"}', key=str(uuid.uuid4()), Accept=accept
    )
    assert (illegal.status_code, illegal.headers["Content-Type"]) == (409, PROBLEM)
    invalid = api.post("/api/v1/telemetry", b'{"mission_id": "x"}', key=str(uuid.uuid4()), Accept=accept)
    assert (invalid.status_code, invalid.headers["Content-Type"]) == (400, PROBLEM)


def test_a_success_under_accept_problem_json_alone_is_json(api: Api, mission_a: Mission) -> None:
    # Documented choice (docs/api-versioning.md): the Accept is disregarded for an answer that succeeds
    # (RFC 9110 §12.5.1), so a change that was made is never reported as a 406.
    read = api.get("/api/v1/capabilities", Accept=PROBLEM)
    assert (read.status_code, read.headers["Content-Type"]) == (200, "application/json")
    body = json.dumps({"kind": "lost_comms", "detail": "x"}).encode()
    write = api.post(f"/api/v1/missions/{mission_a.pk}/exceptions", body, key=str(uuid.uuid4()), Accept=PROBLEM)
    assert (write.status_code, write.headers["Content-Type"]) == (201, "application/json")


@pytest.mark.parametrize("accept", ["text/html", f"{PROBLEM};q=0"])
def test_an_accept_the_api_cannot_meet_is_a_406_problem(api: Api, accept: str) -> None:
    response = api.get("/api/v1/tenders/999999999", Accept=accept)
    assert (response.status_code, response.headers["Content-Type"]) == (406, PROBLEM)


# --- Cache-Control: no-store on every /api/v1 answer ----------------------------------------------------------


def test_every_api_answer_is_no_store(api: Api, carrier_a: Carrier, mission_a: Mission) -> None:
    key = str(uuid.uuid4())
    exception = json.dumps({"kind": "lost_comms", "detail": "x"}).encode()
    answers = {
        "read": api.get("/api/v1/capabilities"),
        "list": api.get("/api/v1/missions"),
        "no token": requests.get(api.url("/api/v1/capabilities"), timeout=30),
        "unknown path": api.get("/api/v1/nothing-here"),
        "wrong method": requests.put(
            api.url("/api/v1/tenders"), headers={"Authorization": f"Bearer {api.token}"}, timeout=30
        ),
        "malformed": api.post(f"/api/v1/missions/{mission_a.pk}/exceptions", b"{", key=str(uuid.uuid4())),
        "too large": api.post("/api/v1/telemetry", b" " * 1_100_000, key=str(uuid.uuid4())),
        "created": api.post(f"/api/v1/missions/{mission_a.pk}/exceptions", exception, key=key),
        "replayed": api.post(f"/api/v1/missions/{mission_a.pk}/exceptions", exception, key=key),
        "schema": requests.get(api.url("/api/v1/schema/"), timeout=30),
        "unsigned webhook": requests.post(
            api.url(f"/api/v1/webhooks/{carrier_a.slug}"),
            data=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=30,
        ),
    }
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "read": 200,
        "list": 200,
        "no token": 401,
        "unknown path": 404,
        "wrong method": 405,
        "malformed": 400,
        "too large": 413,
        "created": 201,
        "replayed": 201,
        "schema": 200,
        "unsigned webhook": 401,
    }
    assert {name: r.headers.get("Cache-Control") for name, r in answers.items()} == dict.fromkeys(answers, "no-store")


def _signed_telemetry(server: AppServer, carrier: Carrier, secret: str, events: list[Any]) -> requests.Response:
    body = json.dumps({"type": "telemetry", "data": {"events": events}}).encode()
    webhook_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    return requests.post(
        f"{server.url}/api/v1/webhooks/{carrier.slug}",
        data=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=stamp, body=body),
        },
        timeout=30,
    )


def test_webhook_answers_are_no_store_on_the_fast_path_too(app_server: AppServer, carrier_b: Carrier) -> None:
    # A carrier this server process has not seen: the fast path keeps each carrier's secrets for a few seconds.
    carrier = CarrierFactory(slug=f"fleet-{uuid.uuid4().hex[:12]}")
    mission = MissionFactory(carrier=carrier, vehicle=VehicleFactory(carrier=carrier))
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("t")).secret
    stored = _signed_telemetry(app_server, carrier, secret, [telemetry_event(mission)])
    assert stored.status_code == 200, stored.text
    refused = _signed_telemetry(app_server, carrier, secret, [telemetry_event(MissionFactory(carrier=carrier_b))])
    assert (refused.status_code, refused.headers["Content-Type"]) == (422, PROBLEM)
    for response in (stored, refused):
        assert response.headers["Cache-Control"] == "no-store"
        # gunicorn: answered by the WSGI fast path, without Django's middleware (which would add X-Frame-Options).
        assert ("X-Frame-Options" in response.headers) is (app_server.kind == "daphne")


# --- OAuth endpoint details ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/token/"])
def test_token_endpoint_with_and_without_the_trailing_slash(
    app_server: AppServer, partner_a: IssuedClient, path: str
) -> None:
    response = _token(app_server, partner_a, path)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    api = Api(server=app_server, issued=partner_a, token=response.json()["access_token"])
    assert api.get("/api/v1/capabilities").status_code == 200


@pytest.mark.parametrize("path", ["/oauth2/revoke", "/oauth2/revoke/"])
def test_revocation_with_and_without_the_trailing_slash(api: Api, path: str) -> None:
    response = requests.post(
        api.url(path), data={"token": api.token}, headers={"Authorization": _basic(api.issued)}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert api.get("/api/v1/capabilities").status_code == 401


def test_invalid_client_after_basic_is_a_basic_challenge(app_server: AppServer, partner_a: IssuedClient) -> None:
    for path in ("/oauth2/token", "/oauth2/token/", "/oauth2/revoke"):
        response = requests.post(
            f"{app_server.url}{path}",
            data={"grant_type": "client_credentials", "token": "x"},
            headers={"Authorization": _basic(partner_a, secret="wrong")},
            timeout=30,
        )
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "invalid_client"
        # RFC 6749 §5.2: the scheme the client used, never the resource server's Bearer.
        assert response.headers["WWW-Authenticate"] == 'Basic realm="tms-partner-api", charset="UTF-8"'
        assert response.headers["Cache-Control"] == "no-store"


def test_invalid_client_with_credentials_in_the_body_is_401_with_the_basic_challenge(
    app_server: AppServer, partner_a: IssuedClient
) -> None:
    response = requests.post(
        f"{app_server.url}/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": partner_a.client_id, "client_secret": "wrong"},
        timeout=30,
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    good = requests.post(
        f"{app_server.url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": partner_a.client_id,
            "client_secret": partner_a.client_secret,
        },
        timeout=30,
    )
    assert good.status_code == 200  # client_secret_post, as the metadata says


def test_authorization_server_metadata_is_public_json(app_server: AppServer, partner_a: IssuedClient) -> None:
    response = requests.get(
        f"{app_server.url}/.well-known/oauth-authorization-server", timeout=30, allow_redirects=False
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    metadata = response.json()
    issuer = metadata["issuer"]
    assert urlsplit(issuer).scheme in ("http", "https") and not urlsplit(issuer).path
    assert metadata["token_endpoint"] == f"{issuer}/oauth2/token"
    assert metadata["revocation_endpoint"] == f"{issuer}/oauth2/revoke"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["response_types_supported"] == []
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "tls_client_auth",
    }
    assert metadata["tls_client_certificate_bound_access_tokens"] is True
    assert "tender:read" in metadata["scopes_supported"] and "missions:write" in metadata["scopes_supported"]
    # The endpoints it names are the ones this server answers at.
    token = _token(app_server, partner_a, urlsplit(metadata["token_endpoint"]).path)
    assert token.status_code == 200
    assert requests.get(app_server.url + urlsplit(metadata["service_documentation"]).path, timeout=30).ok
