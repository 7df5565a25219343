"""Query counts of every partner endpoint, pinned so an N+1 or needless work cannot come back.

The data is what a busy carrier has: several tenders (some with offers), missions with
vehicles and events. Each limit is the count measured on one request at that size; a
query per row would break it. The token is fetched beforehand, so each count is one
authenticated request: token lookup, throttling and idempotency stores included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from missions import services
from missions.choices import MissionStatus, TenderStatus
from missions.events import Actor
from missions.models import Carrier, Mission, Tender
from missions.models.partner import TokenCertificateBinding
from missions.tendering import dispatch
from tests.factories import MissionFactory, ShipmentFactory, TenderFactory, VehicleFactory
from tests.partner.conftest import new_key

ROWS = 8


@pytest.fixture
def busy_carrier(carrier_a: Carrier) -> dict[str, Any]:
    """Tenders with offers, missions with vehicles and events, for carrier A (and some noise for another)."""
    tenders = [TenderFactory(carrier=carrier_a, status=TenderStatus.SENT) for _ in range(ROWS)]
    actor = Actor.for_carrier(carrier_a)
    for tender in tenders[: ROWS // 2]:
        dispatch.offer_receive(
            tender_id=tender.pk,
            actor=actor,
            kind="counter",
            price_usd=Decimal("1234.00"),
            reason="busy lane",
            source="api",
        )
    missions = []
    for _ in range(ROWS):
        mission = MissionFactory(
            carrier=carrier_a, shipment=ShipmentFactory(), vehicle=VehicleFactory(carrier=carrier_a)
        )
        missions.append(mission)
    for mission in missions[: ROWS // 2]:
        services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.EN_ROUTE, actor=actor, reason="go")
    TenderFactory(status=TenderStatus.SENT)
    # A fallback load booked without its truck, and the truck its carrier names for it.
    unassigned = MissionFactory(carrier=carrier_a, shipment=ShipmentFactory(), vehicle=None)
    VehicleFactory(carrier=carrier_a, external_id="FB-001")
    return {"tenders": tenders, "missions": missions, "unassigned": unassigned}


def _post(api: APIClient, path: str, body: Any) -> Any:
    return api.post(path, json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=new_key())


def _telemetry(mission: Mission) -> dict[str, Any]:
    return {
        "event_id": new_key(),
        "mission_id": mission.pk,
        "vehicle_id": mission.vehicle.external_id if mission.vehicle else "TRK-X",
        "ts": timezone.now().isoformat(),
        "position": {"lat": 32.5, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0},
    }


def _requests(data: dict[str, Any]) -> dict[str, Callable[[APIClient], Any]]:
    tenders: list[Tender] = data["tenders"]
    missions: list[Mission] = data["missions"]
    fresh, moving = missions[-1], missions[0]
    return {
        "capabilities": lambda api: api.get("/api/v1/capabilities"),
        "tenders": lambda api: api.get("/api/v1/tenders"),
        "tenders?status": lambda api: api.get("/api/v1/tenders?status=sent"),
        "tender": lambda api: api.get(f"/api/v1/tenders/{tenders[0].pk}"),
        "offer": lambda api: _post(
            api, f"/api/v1/tenders/{tenders[-1].pk}/offers", {"kind": "counter", "price_usd": "1725.50"}
        ),
        "missions": lambda api: api.get("/api/v1/missions"),
        "mission": lambda api: api.get(f"/api/v1/missions/{moving.pk}"),
        "mission status": lambda api: _post(api, f"/api/v1/missions/{fresh.pk}/status", {"status": "en_route"}),
        "autonomy mode": lambda api: _post(
            api, f"/api/v1/missions/{moving.pk}/autonomy-mode", {"mode": "supervised", "reason": "work zone"}
        ),
        "mission vehicle": lambda api: _post(
            api, f"/api/v1/missions/{data['unassigned'].pk}/vehicle", {"vehicle_external_id": "FB-001"}
        ),
        "exception": lambda api: _post(
            api, f"/api/v1/missions/{moving.pk}/exceptions", {"kind": "degraded_sensors", "detail": "lidar 2 dirty"}
        ),
        "events": lambda api: api.get("/api/v1/events?after=0&limit=50"),
        "telemetry": lambda api: _post(api, "/api/v1/telemetry", _telemetry(moving)),
        "telemetry batch": lambda api: _post(
            api, "/api/v1/telemetry/batch", {"events": [_telemetry(m) for m in missions[: ROWS // 2] for _ in range(3)]}
        ),
    }


# Measured at ROWS tenders and missions. A read is the token lookup (one statement: the access
# token with its application, partner client, carrier and certificate binding), then the rows;
# a write adds the idempotency record (claimed, then completed) and the service's own statements.
LIMITS = {
    "capabilities": 8,
    "tenders": 3,
    "tenders?status": 3,
    "tender": 2,
    "offer": 21,
    "missions": 3,
    "mission": 2,
    "mission status": 17,
    "autonomy mode": 36,
    "mission vehicle": 14,
    "exception": 19,
    "events": 2,
    "telemetry": 17,
    "telemetry batch": 19,
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(LIMITS))
def test_every_partner_endpoint_keeps_its_query_count(
    name: str, busy_carrier: dict[str, Any], api_a: APIClient, django_assert_max_num_queries: Any
) -> None:
    call = _requests(busy_carrier)[name]
    # Steady state: the throttling store reads and claims the client's rate window on its first
    # request in that window (6 more statements, once per window), not on every request.
    assert api_a.get("/api/v1/capabilities").status_code == 200
    with django_assert_max_num_queries(LIMITS[name]):
        response = call(api_a)
    assert response.status_code in (200, 201, 202), response.content


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/tenders", "/api/v1/missions", "/api/v1/events?after=0&limit=100"])
def test_a_page_costs_the_same_queries_at_any_size(path: str, busy_carrier: dict[str, Any], api_a: APIClient) -> None:
    def count() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as ctx:
            response = api_a.get(path)
        assert response.status_code == 200
        body = response.json()
        return len(ctx.captured_queries), len(body.get("results", body.get("events", [])))

    assert api_a.get("/api/v1/capabilities").status_code == 200  # the rate window, as above
    small, small_rows = count()
    carrier = busy_carrier["tenders"][0].carrier
    actor = Actor.for_carrier(carrier)
    for _ in range(3 * ROWS):
        TenderFactory(carrier=carrier, status=TenderStatus.SENT)
        mission = MissionFactory(carrier=carrier, shipment=ShipmentFactory(), vehicle=VehicleFactory(carrier=carrier))
        services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.EN_ROUTE, actor=actor, reason="go")
    large, large_rows = count()
    assert large_rows > small_rows  # the page really grew
    assert large == small, f"{path}: {small} queries for {small_rows} rows, {large} for {large_rows}"


@pytest.mark.django_db
@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "certificate-bound"])
def test_the_token_lookup_is_one_statement_with_its_certificate_binding(
    bound: bool, busy_carrier: dict[str, Any], api_a: APIClient
) -> None:
    token = AccessToken.objects.order_by("-id").first()
    assert token is not None
    if bound:
        # Bound to a certificate this request does not present: refused, still without a second lookup.
        TokenCertificateBinding.objects.create(access_token=token, x5t_s256="A" * 43)
    with CaptureQueriesContext(connection) as ctx:
        response = api_a.get(f"/api/v1/tenders/{busy_carrier['tenders'][0].pk}")
    assert response.status_code == (401 if bound else 200), response.content
    lookups = [q["sql"] for q in ctx.captured_queries if "oauth2_provider_accesstoken" in q["sql"]]
    assert len(lookups) == 1
    assert "missions_tokencertificatebinding" in lookups[0]
    assert not any(
        "missions_tokencertificatebinding" in q["sql"] and "oauth2_provider_accesstoken" not in q["sql"]
        for q in ctx.captured_queries
    )
