"""Vehicle SVIDs on the signed-webhook path, through the view and the WSGI fast path.

The edge forwards the verified client certificate (URL-encoded PEM, as nginx's
``$ssl_client_escaped_cert``); here the test client plays the edge's address.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client

from missions.events import Actor
from missions.models import Carrier, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner import services as partner_services
from missions.partner.api.webhook_wsgi import WebhookFastPath
from missions.partner.api.webhooks import webhook_sign
from tests.identity.conftest import BAD_SVIDS, Pki, refused_count
from tests.partner.conftest import assert_problem
from tests.partner.test_isolation import telemetry_event
from tests.svid import Issued

EDGE = "10.9.8.7"


@pytest.fixture(autouse=True)
def _edge_is_trusted(settings: Any) -> None:
    settings.PARTNER_TRUSTED_PROXIES = [f"{EDGE}/32"]


@pytest.fixture
def secret(pki: Pki) -> str:
    return partner_services.webhook_secret_rotate(carrier_id=pki.carrier_a.pk, actor=Actor.system("t")).secret


def _signed(carrier: Carrier, secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    webhook_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    return body, {
        "HTTP_WEBHOOK_ID": webhook_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(stamp),
        "HTTP_WEBHOOK_SIGNATURE": webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=stamp, body=body),
    }


def _edge_headers(svid: Issued | None, *, peer: str = EDGE) -> dict[str, str]:
    headers = {"REMOTE_ADDR": peer}
    if svid is not None:
        headers |= {"HTTP_X_SSL_CLIENT_CERT": svid.escaped, "HTTP_X_SSL_CLIENT_VERIFY": "SUCCESS"}
    return headers


def _deliver(client: Client, pki: Pki, secret: str, svid: Issued | None, **event: Any) -> Any:
    payload = {"type": "telemetry", "data": {"events": [telemetry_event(pki.mission, **event)]}}
    body, signature = _signed(pki.carrier_a, secret, payload)
    return client.generic(
        "POST",
        f"/api/v1/webhooks/{pki.carrier_a.slug}",
        body,
        content_type="application/json",
        **signature,
        **_edge_headers(svid),
    )


def _stored() -> int:
    return TelemetryWindowEvent.objects.count() + TelemetrySample.objects.count()


def test_a_vehicle_with_its_svid_is_stored_with_the_certificate_fingerprint(
    client: Client, pki: Pki, secret: str
) -> None:
    svid = pki.svid()
    response = _deliver(client, pki, secret, svid)
    assert response.status_code == 200, response.content
    assert response.json()["telemetry"]["accepted"] == 1
    sample = TelemetrySample.objects.get(mission=pki.mission)
    from missions.identity.svid import fingerprint_sha256

    assert sample.data["vehicle_cert"] == fingerprint_sha256(svid.certificate)
    assert sample.data["vehicle_cert"].startswith("sha256:") and len(sample.data["vehicle_cert"]) == 71


@pytest.mark.parametrize("case", list(BAD_SVIDS))
def test_a_refused_svid_is_a_problem_naming_the_reason_counted_and_nothing_is_stored(
    client: Client, pki: Pki, secret: str, case: str
) -> None:
    make, reason = BAD_SVIDS[case]
    before = refused_count(reason, "webhook")
    response = _deliver(client, pki, secret, make(pki))
    body = assert_problem(response, 403, "vehicle-identity-refused")
    assert body["reason"] == reason, body
    assert refused_count(reason, "webhook") == before + 1
    assert _stored() == 0


def test_no_svid_where_the_carrier_requires_one_is_401(client: Client, pki: Pki, secret: str) -> None:
    before = refused_count("required", "webhook")
    body = assert_problem(_deliver(client, pki, secret, None), 401, "vehicle-identity-required")
    assert body["reason"] == "required"
    assert refused_count("required", "webhook") == before + 1
    assert _stored() == 0


def test_the_certificate_header_from_anyone_but_the_edge_is_not_an_identity(
    client: Client, pki: Pki, secret: str
) -> None:
    payload = {"type": "telemetry", "data": {"events": [telemetry_event(pki.mission)]}}
    body, signature = _signed(pki.carrier_a, secret, payload)
    response = client.generic(
        "POST",
        f"/api/v1/webhooks/{pki.carrier_a.slug}",
        body,
        content_type="application/json",
        **signature,
        **_edge_headers(pki.svid(), peer="203.0.113.5"),
    )
    assert_problem(response, 401, "vehicle-identity-required")


def test_a_carrier_without_a_trust_domain_keeps_working_without_svids(client: Client, pki: Pki) -> None:
    from tests.factories import MissionFactory, ShipmentFactory, VehicleFactory

    plain = Carrier.objects.create(name="Plain", slug="plain")
    mission = MissionFactory(carrier=plain, shipment=ShipmentFactory(), vehicle=VehicleFactory(carrier=plain))
    secret = partner_services.webhook_secret_rotate(carrier_id=plain.pk, actor=Actor.system("t")).secret
    payload = {"type": "telemetry", "data": {"events": [telemetry_event(mission)]}}
    body, signature = _signed(plain, secret, payload)
    response = client.generic(
        "POST", "/api/v1/webhooks/plain", body, content_type="application/json", **signature, **_edge_headers(None)
    )
    assert response.status_code == 200, response.content
    assert "vehicle_cert" not in TelemetrySample.objects.get(mission=mission).data
    # ... but a vehicle certificate of a registered carrier is not accepted there either.
    payload = {"type": "telemetry", "data": {"events": [telemetry_event(mission)]}}
    body, signature = _signed(plain, secret, payload)
    response = client.generic(
        "POST",
        "/api/v1/webhooks/plain",
        body,
        content_type="application/json",
        **signature,
        **_edge_headers(pki.svid()),
    )
    assert assert_problem(response, 403, "vehicle-identity-refused")["reason"] == "other-carrier"


def test_svids_become_optional_when_the_carrier_stops_requiring_them(client: Client, pki: Pki, secret: str) -> None:
    from missions.identity import services as identity_services
    from missions.identity.selectors import trust_registry_forget

    identity_services.trust_domain_set(
        carrier_id=pki.carrier_a.pk, name="carrier-a.example", svid_required=False, actor=Actor.system("t")
    )
    trust_registry_forget()
    assert _deliver(client, pki, secret, None).status_code == 200
    # A certificate that is presented must still be valid.
    make, reason = BAD_SVIDS["expired"]
    assert assert_problem(_deliver(client, pki, secret, make(pki)), 403)["reason"] == reason


# --- the WSGI fast path (gunicorn) ----------------------------------------------------------------


class _Spy:
    def __init__(self) -> None:
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        return self.django(environ, start_response)


def _fast(app: WebhookFastPath, pki: Pki, secret: str, svid: Issued | None) -> tuple[int, dict[str, Any]]:
    payload = {"type": "telemetry", "data": {"events": [telemetry_event(pki.mission)]}}
    body, signature = _signed(pki.carrier_a, secret, payload)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/webhooks/{pki.carrier_a.slug}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **signature,
        **_edge_headers(svid),
    }
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    content = b"".join(app(environ, start_response))
    assert captured["headers"]["Content-Type"].startswith(
        "application/json" if captured["status"] == 200 else "application/problem+json"
    )
    return captured["status"], json.loads(content)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", ["good", "expired", "another carrier's SVID", "another vehicle's SVID", "none"])
def test_the_fast_path_checks_the_svid_like_the_view(pki: Pki, secret: str, case: str) -> None:
    spy = _Spy()
    app = WebhookFastPath(spy, group_commit=False)
    if case == "good":
        status, body = _fast(app, pki, secret, pki.svid())
        assert status == 200, body
        assert TelemetrySample.objects.get(mission=pki.mission).data["vehicle_cert"].startswith("sha256:")
    elif case == "none":
        status, body = _fast(app, pki, secret, None)
        assert (status, body["reason"]) == (401, "required")
    else:
        make, reason = BAD_SVIDS[case]
        status, body = _fast(app, pki, secret, make(pki))
        assert (status, body["reason"]) == (403, reason)
        assert body["type"] == "/api/v1/problems/vehicle-identity-refused"
        assert _stored() == 0
    assert spy.calls == 0  # answered by the fast path itself


@pytest.mark.django_db(transaction=True)
def test_group_commit_keeps_each_vehicles_fingerprint(pki: Pki, secret: str) -> None:
    app = WebhookFastPath(_Spy(), group_commit=True)
    svid = pki.svid()
    status, body = _fast(app, pki, secret, svid)
    assert status == 200, body
    from missions.identity.svid import fingerprint_sha256

    assert TelemetrySample.objects.get(mission=pki.mission).data["vehicle_cert"] == fingerprint_sha256(svid.certificate)
