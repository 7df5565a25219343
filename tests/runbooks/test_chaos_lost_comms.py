"""Chaos: cut a truck's comms mid-mission with the fleet and carrier simulators running.

Everything runs for real and in real time in this process: the fleet
simulator drives the truck along I-45 and sends telemetry through the ingest
path, the carrier simulator answers the console's calls over HTTP, and a
loop plays Celery beat (gap detection every second, the runbook tick every
two). Celery tasks run eagerly. A local receiver records the Events API v2
calls. The measured time to failover is printed. One run traces it all into
the span store and reads the incident back as on-call sees it: the mission's
trace pinned, the incident's own trace, the telemetry window, and a page that
carries the trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.template.defaultfilters import floatformat
from django.test import override_settings
from django.urls import reverse

from missions.choices import CarrierKind, MissionStatus
from missions.models import Carrier, Mission
from missions.simulators.carrier import CarrierSimulator, SimConfig
from missions.simulators.fleet import Fault, FleetSimulator, vehicles_from_missions
from missions.telemetry.gaps import telemetry_gaps_check
from missions.telemetry.ingest import ingest_events
from runbooks.choices import IncidentStatus
from runbooks.models import Incident
from runbooks.tasks import runbooks_tick
from tests.conftest import verified_client
from tests.factories import CarrierFactory, ContractFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.runbooks.pager import PagerReceiver
from tests.tracing import SwitchedExporter
from tms_console import tracing
from tms_console.models import TraceSpan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GAP_SECONDS = 5
RECOVERY_TIMEOUT_SECONDS = 10


class InProcessTransport:
    """Hands the simulator's batches to the same ingest path the HTTP, WS and MQTT inputs use."""

    def __init__(self) -> None:
        self.carriers: dict[str, Carrier] = {}

    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]:
        carrier = self.carriers.setdefault(carrier_slug, Carrier.objects.get(slug=carrier_slug))
        # The span an HTTP, WebSocket or MQTT input would have around the batch (recorded only when a test traces).
        with tracing.span_from("telemetry batch fleet-sim", carrier=carrier_slug):
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


def test_lost_comms_incident_pins_the_missions_trace_and_pages_with_it(
    stored_spans: SwitchedExporter, world: dict[str, Any], oncall: User
) -> None:
    mission: Mission = world["mission"]
    # The load's trace, as tendering leaves it on the mission (tests/tendering/test_tracing.py follows the real path).
    with tracing.span_from("tender accepted", new_trace=True, mission_id=mission.pk, carrier=mission.carrier.slug):
        Mission.objects.filter(pk=mission.pk).update(traceparent=tracing.current_traceparent())
    mission.refresh_from_db()
    mission_trace = tracing.trace_id_of(mission.traceparent)
    assert mission_trace

    def paged() -> bool:
        return any(c["event_action"] == "trigger" for c in world["pager"].calls)

    run_world(world, seconds=40, cut_at=3.0, until=paged)
    assert paged(), "no page within 40 s of the comms cut"
    tracing.flush()
    incident = Incident.objects.get(mission=mission, kind="lost_comms")
    assert incident.pinned_traceparent == mission.traceparent
    incident_trace = tracing.trace_id_of(incident.traceparent)
    assert incident_trace and incident_trace != mission_trace
    assert incident.pinned_telemetry, "no telemetry pinned at detection"

    # The page carries both traces and links on-call to them.
    trigger = next(c for c in world["pager"].calls if c["event_action"] == "trigger")
    details = trigger["payload"]["custom_details"]
    assert details["trace_id"] == mission_trace
    assert details["incident_trace_id"] == incident_trace
    assert details["telemetry"]["samples"] == len(incident.pinned_telemetry)
    hrefs = [link["href"] for link in trigger["links"]]
    assert f"{settings.PUBLIC_BASE_URL}/traces/{mission_trace}/" in hrefs
    assert f"{settings.PUBLIC_BASE_URL}/traces/{incident_trace}/" in hrefs

    # Both traces were stored, the incident's span linking to the mission's.
    assert TraceSpan.objects.filter(trace_id=mission_trace, name="tender accepted").exists()
    opened = TraceSpan.objects.get(trace_id=incident_trace, name="incident opened: lost_comms")
    assert list(opened.links.values_list("trace_id", flat=True)) == [mission_trace]

    # What on-call sees: the pinned trace, the incident's own with its runbook and page, the telemetry window.
    html = verified_client(oncall).get(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk})).content.decode()
    pinned = html.split('id="incident-pinned-trace"', 1)[1].split("</section>", 1)[0]
    assert "tender accepted" in pinned and f"/traces/{mission_trace}/" in pinned
    own = html.split('id="incident-trace"', 1)[1].split("</section>", 1)[0]
    assert "incident opened: lost_comms" in own and "page trigger" in own
    telemetry = html.split('id="incident-telemetry"', 1)[1].split("</section>", 1)[0]
    assert f"<dt>Samples</dt><dd>{len(incident.pinned_telemetry)}</dd>" in telemetry
    last = incident.pinned_telemetry[-1]
    # As the page rounds it (Django's floatformat rounds the decimal text half up, format() the binary value).
    assert f"{floatformat(last['lat'], 5)}, {floatformat(last['lon'], 5)}" in telemetry

    # And the mission's trace page lists the incident and the telemetry batches among the spans linking to it.
    trace_page = verified_client(oncall).get(reverse("traces:detail", kwargs={"trace_id": mission_trace}))
    linked = trace_page.content.decode().split('id="trace-linked"', 1)[1]
    assert "incident opened: lost_comms" in linked and f"/traces/{incident_trace}/" in linked
    assert "telemetry batch fleet-sim" in linked  # the batches that reported on the mission
