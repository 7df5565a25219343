"""The whole carrier flow against a live server, driven by a real OAuth2 client library.

requests-oauthlib's BackendApplicationClient performs the RFC 6749 §4.4
client-credentials grant; every call after that carries its bearer token.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from missions.choices import MissionStatus, TenderStatus
from missions.models import Mission, MissionException, Tender
from tests.factories import CarrierFactory, ShipmentFactory, TenderFactory, VehicleFactory
from tests.partner.conftest import issue_client

pytestmark = pytest.mark.django_db(transaction=True)


def _session(live_server: Any, client_id: str, client_secret: str, scope: list[str]) -> OAuth2Session:
    session = OAuth2Session(client=BackendApplicationClient(client_id=client_id, scope=scope))
    token = session.fetch_token(
        token_url=f"{live_server.url}/oauth2/token", client_id=client_id, client_secret=client_secret, scope=scope
    )
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 900
    assert "refresh_token" not in token
    return session


def _post(session: OAuth2Session, url: str, body: dict[str, Any]) -> Any:
    return session.post(url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def test_carrier_flow_capabilities_tenders_counter_accept_status_exception(live_server: Any, monkeypatch: Any) -> None:
    # The live server speaks plain HTTP; in production the token URL is HTTPS behind the proxy.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    carrier = CarrierFactory(slug="waymo-via-test")
    vehicle = VehicleFactory(carrier=carrier, external_id="TRK-7")
    countered = TenderFactory(carrier=carrier, status=TenderStatus.SENT, shipment=ShipmentFactory())
    accepted = TenderFactory(carrier=carrier, status=TenderStatus.SENT, shipment=ShipmentFactory())
    issued = issue_client(carrier)
    scopes = ["tender:read", "tender:write", "missions:read", "missions:write", "exceptions:write"]
    api = _session(live_server, issued.client_id, issued.client_secret, scopes)
    base = f"{live_server.url}/api/v1"

    caps = api.get(f"{base}/capabilities")
    assert caps.status_code == 200
    assert caps.json()["idempotency"]["retention_hours"] == 24
    assert set(scopes) == set(caps.json()["granted_scopes"])

    listed = api.get(f"{base}/tenders", params={"status": "sent"})
    assert listed.status_code == 200
    assert {t["id"] for t in listed.json()["results"]} == {countered.pk, accepted.pk}

    counter = _post(api, f"{base}/tenders/{countered.pk}/offers", {"kind": "counter", "price_usd": "1725.50"})
    assert counter.status_code == 201, counter.text
    assert counter.json()["tender_status"] == TenderStatus.COUNTERED

    accept = _post(
        api,
        f"{base}/tenders/{accepted.pk}/offers",
        {
            "kind": "accept",
            "vehicle_external_id": vehicle.external_id,
            "route_id": "I-45-S",
            "eta": "2030-01-01T12:00:00Z",
            "autonomy_mode": "autonomous",
            "metadata": {"quote": "Q-1"},
        },
    )
    assert accept.status_code == 201, accept.text
    mission_id = accept.json()["mission_id"]
    assert Tender.objects.get(pk=accepted.pk).status == TenderStatus.ACCEPTED

    missions = api.get(f"{base}/missions")
    assert [m["id"] for m in missions.json()["results"]] == [mission_id]
    assert missions.json()["results"][0]["vehicle_id"] == "TRK-7"

    moved = _post(api, f"{base}/missions/{mission_id}/status", {"status": "en_route"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == MissionStatus.EN_ROUTE

    reported = _post(
        api,
        f"{base}/missions/{mission_id}/exceptions",
        {"kind": "degraded_sensors", "detail": "lidar 2 dirty", "data": {"sensor": "lidar-2"}},
    )
    assert reported.status_code == 201, reported.text
    assert Mission.objects.get(pk=mission_id).status == MissionStatus.EN_ROUTE
    assert MissionException.objects.get(mission_id=mission_id).kind == "degraded_sensors"

    detail = api.get(f"{base}/missions/{mission_id}")
    assert detail.status_code == 200 and detail.json()["status"] == "en_route"
