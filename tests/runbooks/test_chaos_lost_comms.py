"""Chaos: cut a truck's comms mid-mission with the fleet and carrier simulators running.

Everything runs for real and in real time in this process: the fleet
simulator drives the truck along I-45 and sends telemetry through the ingest
path, the carrier simulator answers the console's calls over HTTP, and a
loop plays Celery beat (gap detection every second, the runbook tick every
two). Celery tasks run eagerly. A local receiver records the Events API v2
calls. The measured time to failover is printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from missions.choices import CarrierKind, MissionStatus
from missions.models import Carrier, Mission
from missions.simulators.carrier import CarrierSimulator, SimConfig
from missions.simulators.fleet import Fault, FleetSimulator, vehicles_from_missions
from missions.telemetry.gaps import telemetry_gaps_check
from missions.telemetry.ingest import ingest_events
from runbooks.choices import IncidentStatus
from runbooks.models import Incident
from runbooks.tasks import runbooks_tick
from tests.factories import CarrierFactory, ContractFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.runbooks.pager import PagerReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GAP_SECONDS = 5
RECOVERY_TIMEOUT_SECONDS = 10


class InProcessTransport:
    """Hands the simulator's batches to the same ingest path the HTTP, WS and MQTT inputs use."""

    def __init__(self) -> None:
        self.carriers: dict[str, Carrier] = {}

    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]:
        carrier = self.carriers.setdefault(carrier_slug, Carrier.objects.get(slug=carrier_slug))
        result = ingest_events(carrier=carrier, events=events, source="fleet-sim")
        return {"accepted": result.accepted, "rejected": len(result.rejected)}

    def close(self) -> None:
        pass


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    sim = CarrierSimulator(SimConfig(policy={"accept": 1.0}, vehicles=["SIM-001"], seed=7)).start()
    pager = PagerReceiver()
    carrier = CarrierFactory(
        name="Lonestar",
        slug="lonestar",
        api_base_url=sim.url,
        api_client_id=sim.state.config.client_id,
        api_client_secret=sim.state.config.client_secret,
        api_timeout_seconds=0.5,
        operating_regions=["TX"],
    )
    vehicle = VehicleFactory(carrier=carrier, external_id="SIM-001")
    CarrierFactory(
        name="Red River",
        slug="red-river",
        kind=CarrierKind.HUMAN_DRIVEN,
        is_fallback=True,
        fallback_rate_usd_per_km=Decimal("2.35"),
        operating_regions=["TX"],
    )
    ContractFactory(
        carrier=carrier, telemetry_gap_seconds=GAP_SECONDS, recovery_timeout_seconds=RECOVERY_TIMEOUT_SECONDS
    )
    mission = MissionFactory(
        carrier=carrier, vehicle=vehicle, shipment=ShipmentFactory(), status=MissionStatus.EN_ROUTE
    )
    fleet = FleetSimulator(vehicles=vehicles_from_missions([mission]), transport=InProcessTransport())
    with override_settings(
        PAGERDUTY_EVENTS_URL=pager.url,
        PAGERDUTY_ROUTING_KEY="chaos",
        PAGERDUTY_ATTEMPTS=2,
        CARRIER_RETRY_BASE_SECONDS=0.0,
        CARRIER_RETRY_CAP_SECONDS=0.0,
    ):
        yield {"sim": sim, "pager": pager, "mission": mission, "fleet": fleet}
    pager.close()
    sim.stop()


def run_world(
    world: dict[str, Any], *, seconds: float, until: Any = None, cut_at: float | None = None, restore_when: Any = None
) -> float:
    """Drive the fleet at 1 Hz and play beat, in real time, until ``until()`` or ``seconds`` pass."""
    fleet: FleetSimulator = world["fleet"]
    started = time.monotonic()
    last_tick = last_runbook_tick = -10.0
    while (elapsed := time.monotonic() - started) < seconds:
        if cut_at is not None and elapsed >= cut_at:
            fleet.faults.append(Fault(kind="comms_loss", vehicle="SIM-001"))
            world["sim"].faults_set(refuse=True)  # the satellite channel is gone too
            cut_at = None
        if restore_when is not None and restore_when():
            fleet.faults.clear()
            fleet.vehicles[0].faults.clear()
            world["sim"].faults_clear()
            restore_when = None
        if elapsed - last_tick >= 1.0:
            fleet.tick(elapsed, 1.0)
            telemetry_gaps_check()
            last_tick = elapsed
        if elapsed - last_runbook_tick >= 2.0:
            runbooks_tick()
            last_runbook_tick = elapsed
        if until is not None and until():
            return elapsed
        time.sleep(0.1)
    return time.monotonic() - started


def test_comms_cut_fails_over_to_fallback_carrier(world: dict[str, Any]) -> None:
    mission: Mission = world["mission"]
    run_world(world, seconds=40, cut_at=3.0, until=lambda: Mission.objects.filter(replaces=mission).exists())
    incident = Incident.objects.get(mission=mission, kind="lost_comms")
    triggers = [c for c in world["pager"].calls if c["event_action"] == "trigger"]
    assert len(triggers) == 1 and triggers[0]["dedup_key"] == f"tms-incident-{incident.pk}"
    assert triggers[0]["payload"]["custom_details"]["mission_id"] == mission.pk
    mission.refresh_from_db()
    assert mission.status == MissionStatus.HANDED_OVER
    mission.carrier.refresh_from_db()
    assert mission.carrier.fleet_paused  # contained: no new autonomous tenders to that fleet
    replacement = Mission.objects.get(replaces=mission)
    assert replacement.carrier.slug == "red-river" and replacement.tender.is_fallback
    incident.refresh_from_db()
    assert incident.time_to_failover_seconds is not None
    print(
        f"\nlost comms -> fallback booked: time to failover {incident.time_to_failover_seconds:.1f} s "
        f"(recovery timeout {RECOVERY_TIMEOUT_SECONDS} s, target timeout + 5 s)"
    )
    assert incident.time_to_failover_seconds >= RECOVERY_TIMEOUT_SECONDS


def test_comms_back_before_timeout_resolves_without_failover(world: dict[str, Any]) -> None:
    mission: Mission = world["mission"]

    def resolved() -> bool:
        return Incident.objects.filter(mission=mission, status=IncidentStatus.RESOLVED).exists()

    def detected() -> bool:  # comms come back once the gap has been detected, well inside the timeout
        return Incident.objects.filter(mission=mission, kind="lost_comms").exists()

    run_world(world, seconds=40, cut_at=2.0, restore_when=detected, until=resolved)
    incident = Incident.objects.get(mission=mission, kind="lost_comms")
    assert incident.status == IncidentStatus.RESOLVED
    assert incident.time_to_recovery_seconds is not None
    assert not Mission.objects.filter(replaces=mission).exists()
    mission.refresh_from_db()
    assert mission.status == MissionStatus.EN_ROUTE
    actions = [c["event_action"] for c in world["pager"].calls]
    assert actions[0] == "trigger"
    print(f"\ncomms back: incident resolved after {incident.time_to_recovery_seconds:.1f} s, no failover")
