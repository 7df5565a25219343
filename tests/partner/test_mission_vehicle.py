"""A carrier names the truck of a mission booked without one: the fallback load of a failover."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from missions.choices import MissionStatus
from missions.models import AuditEvent, Carrier, Mission
from missions.telemetry.ingest import MissionCache, ingest_events
from tests.factories import MissionFactory, ShipmentFactory, VehicleFactory
from tests.partner.conftest import assert_problem
from tests.partner.test_isolation import telemetry_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def unassigned(carrier_a: Carrier) -> Mission:
    return MissionFactory(carrier=carrier_a, shipment=ShipmentFactory(), vehicle=None, status=MissionStatus.EN_ROUTE)


def _assign(api: APIClient, post_json: Callable[..., Any], mission: Mission, vehicle: str, **kw: Any) -> Any:
    return post_json(api, f"/api/v1/missions/{mission.pk}/vehicle", {"vehicle_external_id": vehicle}, **kw)


def test_the_carrier_names_the_truck_and_its_telemetry_is_taken(
    api_a: APIClient, post_json: Callable[..., Any], unassigned: Mission, carrier_a: Carrier
) -> None:
    VehicleFactory(carrier=carrier_a, external_id="FB-017")
    refused = post_json(
        api_a, "/api/v1/telemetry/batch", {"events": [telemetry_event(unassigned, vehicle_id="FB-017")]}
    )
    assert refused.json()["accepted"] == 0 and "no vehicle assigned" in refused.json()["rejected"][0]["reason"]

    answer = _assign(api_a, post_json, unassigned, "FB-017")
    assert answer.status_code == 200, answer.content
    assert answer.json()["vehicle_id"] == "FB-017"
    unassigned.refresh_from_db()
    assert unassigned.vehicle is not None and unassigned.vehicle.external_id == "FB-017"
    event = AuditEvent.objects.get(action="mission.vehicle_assigned", subject_id=unassigned.pk)
    assert event.after == {"vehicle": "FB-017"} and event.correlation_id == unassigned.correlation_id

    taken = post_json(api_a, "/api/v1/telemetry/batch", {"events": [telemetry_event(unassigned, vehicle_id="FB-017")]})
    assert taken.json()["accepted"] == 1, taken.content


def test_the_same_truck_again_changes_nothing_another_is_a_conflict(
    api_a: APIClient, post_json: Callable[..., Any], unassigned: Mission, carrier_a: Carrier
) -> None:
    VehicleFactory(carrier=carrier_a, external_id="FB-017")
    VehicleFactory(carrier=carrier_a, external_id="FB-018")
    assert _assign(api_a, post_json, unassigned, "FB-017").status_code == 200
    assert _assign(api_a, post_json, unassigned, "FB-017").status_code == 200
    assert AuditEvent.objects.filter(action="mission.vehicle_assigned").count() == 1
    problem = assert_problem(_assign(api_a, post_json, unassigned, "FB-018"), 409)
    assert "FB-017" in problem["detail"]
    unassigned.refresh_from_db()
    assert unassigned.vehicle is not None and unassigned.vehicle.external_id == "FB-017"


def test_a_truck_the_carrier_has_not_registered_is_refused(
    api_a: APIClient, post_json: Callable[..., Any], unassigned: Mission, carrier_b: Carrier
) -> None:
    VehicleFactory(carrier=carrier_b, external_id="TRK-B")  # another carrier's truck
    for vehicle in ("TRK-B", "NOPE-1"):
        problem = assert_problem(_assign(api_a, post_json, unassigned, vehicle), 422)
        assert vehicle in problem["detail"]
    assert_problem(_assign(api_a, post_json, unassigned, ""), 400)
    assert_problem(post_json(api_a, f"/api/v1/missions/{unassigned.pk}/vehicle", {}), 400)
    unassigned.refresh_from_db()
    assert unassigned.vehicle is None
    assert not AuditEvent.objects.filter(action="mission.vehicle_assigned").exists()


def test_a_finished_mission_takes_no_truck(api_a: APIClient, post_json: Callable[..., Any], carrier_a: Carrier) -> None:
    VehicleFactory(carrier=carrier_a, external_id="FB-017")
    done = MissionFactory(carrier=carrier_a, vehicle=None, status=MissionStatus.COMPLETED, completed_at=timezone.now())
    assert_problem(_assign(api_a, post_json, done, "FB-017"), 409)
    done.refresh_from_db()
    assert done.vehicle is None


def test_a_streams_cache_reads_a_mission_without_its_truck_again(unassigned: Mission, carrier_a: Carrier) -> None:
    """A long-lived stream (WebSocket, MQTT bridge) takes the first samples after the truck is named."""
    VehicleFactory(carrier=carrier_a, external_id="FB-017")
    cache = MissionCache(ttl_seconds=3600)
    before = ingest_events(
        carrier=carrier_a, events=[telemetry_event(unassigned, vehicle_id="FB-017")], source="mqtt", cache=cache
    )
    assert before.accepted == 0
    Mission.objects.filter(pk=unassigned.pk).update(vehicle=carrier_a.vehicles.get(external_id="FB-017"))
    after = ingest_events(
        carrier=carrier_a, events=[telemetry_event(unassigned, vehicle_id="FB-017")], source="mqtt", cache=cache
    )
    assert after.accepted == 1, after.rejected
