"""Object-level isolation: carrier B sees and changes nothing of carrier A's, on every endpoint (404)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from missions.choices import MissionStatus, TenderStatus
from missions.models import AuditEvent, Mission, MissionException, Offer, Tender
from tests.partner.conftest import assert_problem

pytestmark = pytest.mark.django_db


def telemetry_event(mission: Mission, **overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "mission_id": mission.pk,
        "vehicle_id": mission.vehicle.external_id if mission.vehicle else "TRK-X",
        "ts": timezone.now().isoformat(),
        "position": {"lat": 32.5, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0},
    }
    event.update(overrides)
    return event


def test_tender_list_shows_only_own_tenders(api_b: APIClient, tender_a: Tender) -> None:
    response = api_b.get("/api/v1/tenders")
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_tender_detail_of_another_carrier_is_404(api_a: APIClient, api_b: APIClient, tender_a: Tender) -> None:
    assert api_a.get(f"/api/v1/tenders/{tender_a.pk}").status_code == 200
    assert_problem(api_b.get(f"/api/v1/tenders/{tender_a.pk}"), 404, "not-found")


def test_offer_on_another_carriers_tender_is_404_and_changes_nothing(
    api_b: APIClient, tender_a: Tender, post_json: Callable[..., Any]
) -> None:
    response = post_json(api_b, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "accept"})
    assert_problem(response, 404, "not-found")
    tender_a.refresh_from_db()
    assert tender_a.status == TenderStatus.SENT
    assert not Offer.objects.exists()


def test_mission_list_shows_only_own_missions(api_b: APIClient, mission_a: Mission) -> None:
    assert api_b.get("/api/v1/missions").json()["count"] == 0


def test_mission_detail_of_another_carrier_is_404(api_a: APIClient, api_b: APIClient, mission_a: Mission) -> None:
    assert api_a.get(f"/api/v1/missions/{mission_a.pk}").status_code == 200
    assert_problem(api_b.get(f"/api/v1/missions/{mission_a.pk}"), 404)


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        ("status", {"status": "en_route"}),
        ("autonomy-mode", {"mode": "manual", "reason": "takeover"}),
        ("exceptions", {"kind": "emergency_stop", "detail": "forged"}),
        ("vehicle", {"vehicle_external_id": "TRK-B"}),
    ],
)
def test_mission_writes_on_another_carriers_mission_are_404(
    api_b: APIClient, mission_a: Mission, post_json: Callable[..., Any], suffix: str, body: dict[str, Any]
) -> None:
    events_before = AuditEvent.objects.count()
    assert_problem(post_json(api_b, f"/api/v1/missions/{mission_a.pk}/{suffix}", body), 404)
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.ASSIGNED
    assert mission_a.autonomy_mode == "autonomous"
    assert not MissionException.objects.exists()
    assert AuditEvent.objects.count() == events_before


def test_telemetry_for_another_carriers_mission_is_404(
    api_b: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    assert_problem(post_json(api_b, "/api/v1/telemetry", telemetry_event(mission_a)), 404)
    mission_a.refresh_from_db()
    assert mission_a.last_seen_at is None


def test_telemetry_batch_rejects_another_carriers_events(
    api_a: APIClient, api_b: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    response = post_json(api_b, "/api/v1/telemetry/batch", {"events": [telemetry_event(mission_a)]})
    assert response.status_code == 202
    assert response.json()["accepted"] == 0
    assert response.json()["rejected"][0]["index"] == 0
    mission_a.refresh_from_db()
    assert mission_a.last_seen_at is None
    own = post_json(api_a, "/api/v1/telemetry/batch", {"events": [telemetry_event(mission_a)]})
    assert own.status_code == 202 and own.json()["accepted"] == 1, own.content
