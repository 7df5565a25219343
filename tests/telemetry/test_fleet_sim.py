"""The fleet simulator: routes on real corridors, plausible motion, faults, and its events pass validation."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from missions.choices import MissionStatus
from missions.models import AuditEvent, Carrier, MissionException, haversine_km
from missions.routes import Polyline
from missions.simulators.fleet import (
    ROUTE_OBJECTS,
    Fault,
    FleetSimulator,
    SimVehicle,
    vehicles_from_missions,
)
from missions.telemetry.ingest import ingest_events
from missions.telemetry.normalize import TelemetryEvent, event_validate
from tests.factories import MissionFactory


class DirectTransport:
    """Feeds the ingest path in-process, as the HTTP view would."""

    def __init__(self, carriers: dict[str, Carrier]) -> None:
        self.carriers = carriers
        self.batches: list[list[dict[str, Any]]] = []

    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]:
        self.batches.append(events)
        result = ingest_events(carrier=self.carriers[carrier_slug], events=events, source="sim")
        return {"accepted": result.accepted, "rejected": len(result.rejected)}

    def close(self) -> None:
        pass


def test_routes_are_real_corridors_of_plausible_length() -> None:
    lengths = {name: round(r.length_km) for name, r in ROUTE_OBJECTS.items()}
    # Road distances: Dallas-Houston ~385 km, Fort Worth-El Paso ~955 km, Phoenix-Tucson ~185 km,
    # Atlanta-Savannah ~400 km, San Antonio-Laredo ~250 km, Chicago-Los Angeles ~3,240 km, Dallas-Atlanta
    # ~1,255 km, El Paso-Phoenix ~690 km, Laredo-Dallas ~690 km, Houston-San Antonio ~320 km; straight
    # segments between waypoints are a little shorter.
    assert 330 <= lengths["I-45 Dallas-Houston"] <= 400
    assert 850 <= lengths["I-20/I-10 Fort Worth-El Paso"] <= 970
    assert 160 <= lengths["I-10 Phoenix-Tucson"] <= 195
    assert 350 <= lengths["I-75/I-16 Atlanta-Savannah"] <= 420
    assert 220 <= lengths["I-35 San Antonio-Laredo"] <= 260
    assert 3000 <= lengths["I-55/I-44/I-40/I-15 Chicago-Los Angeles"] <= 3260
    assert 1150 <= lengths["I-20 Dallas-Atlanta"] <= 1260
    assert 620 <= lengths["I-10 El Paso-Phoenix"] <= 700
    assert 620 <= lengths["I-35 Laredo-Dallas"] <= 700
    assert 290 <= lengths["I-10 Houston-San Antonio"] <= 330


@pytest.mark.django_db
def test_a_simulated_truck_drives_its_missions_planned_route(carrier_a: Carrier) -> None:
    mission = MissionFactory(
        carrier=carrier_a,
        status=MissionStatus.EN_ROUTE,
        shipment__origin_lat=29.7604,
        shipment__origin_lon=-95.3698,
        shipment__destination_lat=32.7767,
        shipment__destination_lon=-96.7970,
    )
    (truck,) = vehicles_from_missions([mission])
    assert truck.route.name == "corridor I-45 Dallas-Houston"
    # Houston -> Dallas: the route starts in Houston (the corridor is listed the other way round).
    assert truck.route.points[0] == (29.7604, -95.3698) and truck.route.points[-1] == (32.7767, -96.797)
    line = Polyline(truck.route.points)
    for _ in range(120):
        truck.step(1.0)
        event = truck.event(datetime.now(UTC))
        assert line.locate(event["position"]["lat"], event["position"]["lon"]).offset_km < 0.05

    # A stored planned route is driven as stored.
    mission.planned_route = [[30.0, -97.0], [30.5, -97.5], [31.0, -98.0]]
    mission.planned_route_basis = "great circle (no known corridor)"
    (stored,) = vehicles_from_missions([mission])
    assert stored.route.points == [(30.0, -97.0), (30.5, -97.5), (31.0, -98.0)]


def test_a_truck_moves_at_plausible_speeds_along_its_route() -> None:
    route = ROUTE_OBJECTS["I-45 Dallas-Houston"]
    truck = SimVehicle(
        mission_id=1,
        vehicle_id="T",
        carrier_slug="c",
        correlation_id="x",
        route=route,
        reverse=False,
        km=50.0,
        rng=random.Random(1),
        speed_kph=80.0,
    )
    positions = []
    for _ in range(600):
        truck.step(1.0)
        assert 0.0 <= truck.speed_kph <= 105.0
        event = truck.event(datetime.now(UTC))
        positions.append((event["position"]["lat"], event["position"]["lon"]))
    travelled = sum(haversine_km(*a, *b) for a, b in itertools.pairwise(positions))
    assert 5.0 < travelled < 10 * 105 / 60 + 0.5  # ten minutes at no more than 105 km/h


def test_fault_parsing() -> None:
    assert Fault.parse("comms_loss:TRK-1@30") == Fault("comms_loss", "TRK-1", 30.0)
    with pytest.raises(ValueError):
        Fault.parse("meteor:TRK-1")


@pytest.mark.django_db
def test_simulated_events_are_valid_and_faults_show_up(carrier_a: Carrier) -> None:
    missions = [MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(3)]
    vehicles = vehicles_from_missions(missions)
    for v in vehicles:
        outcome = event_validate(v.event(datetime.now(UTC)))
        assert isinstance(outcome, TelemetryEvent), outcome
    transport = DirectTransport({carrier_a.slug: carrier_a})
    sim = FleetSimulator(
        vehicles=vehicles,
        transport=transport,
        rate_hz=1.0,
        faults=[Fault("comms_loss", vehicles[0].vehicle_id), Fault("estop", "1"), Fault("supervised", "2")],
    )
    for second in range(3):
        sim.tick(float(second), 1.0)
    assert sim.stats["rejected"] == 0 and sim.stats["accepted"] == 6
    assert all(e["vehicle_id"] != vehicles[0].vehicle_id for batch in transport.batches for e in batch)
    stop = MissionException.objects.get(mission_id=missions[1].pk)
    assert stop.kind == "emergency_stop"
    modes = dict(
        AuditEvent.objects.filter(action="mission.mode_changed").values_list("mission_id", "after__autonomy_mode")
    )
    assert modes == {missions[1].pk: "safe_hold", missions[2].pk: "supervised"}


@pytest.mark.django_db
def test_refresh_adds_new_missions_and_drops_finished_ones_keeping_state(carrier_a: Carrier) -> None:
    first, second = (MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(2))
    sim = FleetSimulator(vehicles=vehicles_from_missions([first, second]), transport=DirectTransport({}))
    sim.vehicles[1].km = 123.0
    third = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    sim.sync([second, third])
    assert [v.mission_id for v in sim.vehicles] == [second.pk, third.pk]
    assert sim.vehicles[0].km == 123.0


def test_the_fleet_keeps_driving_when_its_missions_cannot_be_read(
    carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from missions.management.commands import simulate_fleet

    mission = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    closed: list[bool] = []
    monkeypatch.setattr(simulate_fleet.connection, "close", lambda: closed.append(True))
    answers: list[Any] = [OperationalError("terminating connection due to administrator command"), [mission]]

    def read() -> list[Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    warnings: list[str] = []
    refresh = simulate_fleet.refreshing(read, warnings.append)
    assert refresh() is None  # the database away: nothing to sync, no crash
    assert closed == [True] and "the database did not answer (OperationalError)" in warnings[0]
    assert [m.pk for m in refresh() or []] == [mission.pk]  # the next refresh reads again

    transport = DirectTransport({carrier_a.slug: carrier_a})
    sim = FleetSimulator(
        vehicles=vehicles_from_missions([mission]), transport=transport, rate_hz=50,
        missions_refresh=lambda: None, refresh_every_s=0,
    )  # fmt: skip
    sim.run(0.1)
    assert [v.mission_id for v in sim.vehicles] == [mission.pk]  # kept, not dropped as if finished
    assert sim.stats["sent"] >= 1
