"""Runbooks: seeding, incidents from exceptions, the five runbooks' automated steps, on-call actions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from missions import services as mission_services
from missions.choices import AutonomyMode, CarrierKind, ExceptionKind, MissionStatus
from missions.events import Actor
from missions.models import AuditEvent, Carrier, Mission
from runbooks import engine
from runbooks.choices import IncidentStatus, RunStatus, StepStatus
from runbooks.detection import incident_from_exception
from runbooks.models import Incident, PagerMessage, Runbook, StepRun
from runbooks.services import incident_transition
from tests.factories import CarrierFactory, ContractFactory, MissionFactory
from tests.runbooks.pager import PagerReceiver
from tms_console.domain import Conflict, DomainError

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")


@pytest.fixture
def pager() -> Iterator[PagerReceiver]:
    receiver = PagerReceiver()
    with override_settings(PAGERDUTY_EVENTS_URL=receiver.url, PAGERDUTY_ROUTING_KEY="R0UT1NGKEY", PAGERDUTY_ATTEMPTS=2):
        yield receiver
    receiver.close()


@pytest.fixture
def fallback() -> Carrier:
    return CarrierFactory(
        name="Red River",
        slug="red-river",
        kind=CarrierKind.HUMAN_DRIVEN,
        is_fallback=True,
        fallback_rate_usd_per_km=Decimal("2.00"),
        operating_regions=[],
    )


def en_route_mission(**kwargs: Any) -> Mission:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE, **kwargs)
    mission.last_seen_at = timezone.now() - timedelta(minutes=2)
    mission.last_lat, mission.last_lon = 31.5, -96.4
    mission.save()
    ContractFactory(carrier=mission.carrier, recovery_timeout_seconds=300)
    return mission


def lost_comms_incident(mission: Mission) -> Incident:
    exc = mission_services.mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.LOST_COMMS, actor=Actor.system("gaps")
    )
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    return incident


def steps(incident: Incident) -> dict[int, StepRun]:
    return {s.step.position: s for s in StepRun.objects.filter(run__incident=incident).select_related("step")}


def test_five_runbooks_are_seeded() -> None:
    kinds = set(Runbook.objects.values_list("incident_kind", flat=True))
    assert kinds == {"lost_comms", "degraded_autonomy", "emergency_stop", "ota_failure", "sla_breach"}
    assert all(r.steps.exists() for r in Runbook.objects.all())


def test_exception_opens_one_incident_per_mission_and_kind() -> None:
    mission = en_route_mission()
    first = lost_comms_incident(mission)
    second = lost_comms_incident(mission)
    assert first.pk == second.pk
    assert Incident.objects.count() == 1
    assert AuditEvent.objects.filter(incident_id=first.pk, action="incident.repeated").count() == 1
    assert first.run.runbook.slug == "lost-comms"


def test_incident_pins_last_30_minutes_of_telemetry() -> None:
    from missions.models import TelemetrySample

    mission = en_route_mission()
    now = timezone.now()
    for minutes in (45, 20, 5):
        TelemetrySample.objects.create(
            mission=mission, recorded_at=now - timedelta(minutes=minutes), lat=31.0, lon=-96.0, speed_kph=80.0
        )
    incident = lost_comms_incident(mission)
    incident.refresh_from_db()
    assert len(incident.pinned_telemetry) == 2


def test_lost_comms_fails_over_after_recovery_timeout(pager: PagerReceiver, fallback: Carrier) -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    engine.runbook_advance(run_id=incident.run.pk)
    s = steps(incident)
    assert [s[i].status for i in (1, 2, 3, 4)] == [StepStatus.DONE] * 4
    assert s[5].status == StepStatus.WAITING  # waiting for recovery
    mission.carrier.refresh_from_db()
    assert mission.carrier.fleet_paused  # no alternate channel: fleet contained
    trigger = pager.calls[0]
    assert trigger["event_action"] == "trigger" and trigger["routing_key"] == "R0UT1NGKEY"
    assert trigger["dedup_key"] == f"tms-incident-{incident.pk}"
    assert trigger["payload"]["custom_details"]["mission_id"] == mission.pk
    assert trigger["payload"]["custom_details"]["last_position"] == {"lat": 31.5, "lon": -96.4}
    assert trigger["payload"]["severity"] == "critical"

    with time_machine.travel(incident.triggered_at + timedelta(seconds=301)):
        engine.runbook_advance(run_id=incident.run.pk)
    s = steps(incident)
    assert s[5].status == StepStatus.DONE and s[5].result["recovered"] is False
    assert s[6].status == StepStatus.DONE and s[6].result["fallback"] == "red-river"
    assert s[7].status == StepStatus.SKIPPED  # a fallback carrier fitted: no local pickup needed
    assert s[8].status == StepStatus.WAITING  # the review is on-call's
    mission.refresh_from_db()
    assert mission.status == MissionStatus.HANDED_OVER
    replacement = Mission.objects.get(replaces=mission)
    assert replacement.carrier == fallback
    expected = (Decimal("2.00") * Decimal(str(round(mission.shipment.distance_km, 1)))).quantize(Decimal("0.01"))
    assert replacement.price_usd == expected
    incident.refresh_from_db()
    assert incident.time_to_failover_seconds is not None and incident.time_to_failover_seconds >= 300

    # Running the run again does nothing twice.
    engine.runbook_advance(run_id=incident.run.pk)
    assert Mission.objects.filter(replaces=mission).count() == 1
    assert len([c for c in pager.calls if c["event_action"] == "trigger"]) == 1


def test_comms_back_before_timeout_resolves_without_failover(pager: PagerReceiver, fallback: Carrier) -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    engine.runbook_advance(run_id=incident.run.pk)
    Mission.objects.filter(pk=mission.pk).update(last_seen_at=timezone.now() + timedelta(seconds=1))
    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        engine.runbook_advance(run_id=incident.run.pk)
    s = steps(incident)
    assert s[5].result["recovered"] is True
    assert s[6].status == StepStatus.SKIPPED
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.RESOLVED
    assert incident.time_to_recovery_seconds is not None
    assert not Mission.objects.filter(replaces=mission).exists()
    resolve = PagerMessage.objects.get(incident=incident, event_action="resolve")
    from runbooks.pager import page_deliver

    assert page_deliver(message_id=resolve.pk)
    assert pager.calls[-1]["event_action"] == "resolve"
    assert "payload" not in pager.calls[-1]


def test_no_fallback_fits_asks_for_local_pickup(pager: PagerReceiver) -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    engine.runbook_advance(run_id=incident.run.pk)
    with time_machine.travel(incident.triggered_at + timedelta(seconds=301)):
        engine.runbook_advance(run_id=incident.run.pk)
    s = steps(incident)
    assert s[6].result["fallback"] is None
    assert s[7].status == StepStatus.WAITING
    assert AuditEvent.objects.filter(
        incident_id=incident.pk, action="incident.note", data__text__icontains="local human pickup"
    ).exists()


def test_pager_down_retries_then_fails_and_on_call_can_retry() -> None:
    receiver = PagerReceiver(fail_first=100)
    try:
        with override_settings(PAGERDUTY_EVENTS_URL=receiver.url, PAGERDUTY_ATTEMPTS=2):
            mission = en_route_mission()
            incident = lost_comms_incident(mission)
            start = timezone.now()
            for attempt in range(1, 4):  # max_attempts of the step
                with time_machine.travel(start + timedelta(minutes=5 * attempt)):
                    engine.runbook_advance(run_id=incident.run.pk)
            page_step = steps(incident)[4]
            assert page_step.status == StepStatus.FAILED
            assert AuditEvent.objects.filter(incident_id=incident.pk, action="runbook.step_failed").exists()
            assert AuditEvent.objects.filter(incident_id=incident.pk, action="incident.page_failed").exists()
            receiver.fail_first = 0
            engine.step_retry(step_run_id=page_step.pk, actor=SYSTEM)
            engine.runbook_advance(run_id=incident.run.pk)
            assert steps(incident)[4].status == StepStatus.DONE
    finally:
        receiver.close()


def test_step_interrupted_mid_way_is_resumed_once(pager: PagerReceiver) -> None:
    """A worker died while holding the paging step: after the lease the step is taken over, paged once."""
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    run = incident.run
    with time_machine.travel(timezone.now()):
        engine.runbook_advance(run_id=run.pk)  # steps 1-4 done, waiting on 5
    # Simulate: step 4 was claimed and the page sent, then the worker died before recording DONE.
    step4 = steps(incident)[4]
    StepRun.objects.filter(pk=step4.pk).update(
        status=StepStatus.RUNNING, lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert run.pk in engine.runs_due()
    engine.runbook_advance(run_id=run.pk)
    assert steps(incident)[4].status == StepStatus.DONE
    assert len([c for c in pager.calls if c["event_action"] == "trigger"]) == 1


def test_running_step_with_live_lease_is_not_taken_twice() -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    step1 = steps(incident)[1]
    StepRun.objects.filter(pk=step1.pk).update(
        status=StepStatus.RUNNING, lease_until=timezone.now() + timedelta(minutes=1)
    )
    wait = engine.runbook_advance(run_id=incident.run.pk)
    assert wait is not None and wait > 0
    assert steps(incident)[1].status == StepStatus.RUNNING


def test_manual_step_confirmed_once_and_skip_needs_reason(pager: PagerReceiver, fallback: Carrier) -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    engine.runbook_advance(run_id=incident.run.pk)
    with time_machine.travel(incident.triggered_at + timedelta(seconds=301)):
        engine.runbook_advance(run_id=incident.run.pk)
    review = steps(incident)[8]
    with pytest.raises(DomainError):
        engine.step_skip(step_run_id=review.pk, actor=SYSTEM, reason=" ")
    engine.step_confirm(step_run_id=review.pk, actor=SYSTEM, note="review written")
    with pytest.raises(Conflict):
        engine.step_confirm(step_run_id=review.pk, actor=SYSTEM)
    engine.runbook_advance(run_id=incident.run.pk)
    incident.run.refresh_from_db()
    assert incident.run.status == RunStatus.COMPLETED


def test_degraded_to_supervised_pauses_fleet_and_opens_incident() -> None:
    mission = en_route_mission()
    mission_services.mission_autonomy_change(
        mission_id=mission.pk, mode=AutonomyMode.SUPERVISED, actor=Actor.for_carrier(mission.carrier)
    )
    mission.carrier.refresh_from_db()
    assert mission.carrier.fleet_paused
    exc = mission.exceptions.get(kind=ExceptionKind.MODE_DEGRADED)
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None and incident.kind == "degraded_autonomy"
    engine.runbook_advance(run_id=incident.run.pk)
    s = steps(incident)
    assert s[2].status == StepStatus.DONE and s[4].status == StepStatus.WAITING
    # Resuming the fleet needs a recorded confirmation.
    with pytest.raises(DomainError):
        mission_services.carrier_fleet_resume(carrier_id=mission.carrier_id, actor=SYSTEM, confirmation="")


def test_emergency_stop_suspends_mission() -> None:
    mission = en_route_mission()
    exc = mission_services.mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.EMERGENCY_STOP, actor=Actor.for_carrier(mission.carrier)
    )
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None and incident.severity == "critical"
    engine.runbook_advance(run_id=incident.run.pk)
    mission.refresh_from_db()
    assert mission.status == MissionStatus.SUSPENDED
    s = steps(incident)
    assert s[1].status == StepStatus.DONE and s[2].result["suspended"] is True
    assert s[4].status == StepStatus.WAITING


def test_ota_failure_pauses_fleet() -> None:
    mission = en_route_mission()
    exc = mission_services.mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.OTA_FAILURE, actor=Actor.for_carrier(mission.carrier)
    )
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    engine.runbook_advance(run_id=incident.run.pk)
    mission.carrier.refresh_from_db()
    assert mission.carrier.fleet_paused
    assert steps(incident)[4].status == StepStatus.WAITING


def test_sla_breach_runbook_gathers_evidence() -> None:
    from runbooks.services import incident_open

    carrier = CarrierFactory()
    incident, _ = incident_open(actor=SYSTEM, kind="sla_breach", title="On-time SLO burning", carrier=carrier)
    run = engine.runbook_start(incident_id=incident.pk, actor=SYSTEM)
    assert run is not None and run.runbook.slug == "sla-breach"
    engine.runbook_advance(run_id=run.pk)
    s = steps(incident)
    assert s[1].step.action == "page_oncall" and s[1].status == StepStatus.DONE
    assert s[2].status == StepStatus.DONE and "breaches" in s[2].result
    assert s[3].status == StepStatus.WAITING


def test_actions_refused_on_closed_incident(pager: PagerReceiver, fallback: Carrier) -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    engine.runbook_advance(run_id=incident.run.pk)
    incident_transition(incident_id=incident.pk, to_status=IncidentStatus.RESOLVED, actor=SYSTEM)
    incident_transition(incident_id=incident.pk, to_status=IncidentStatus.CLOSED, actor=SYSTEM, review="done")
    waiting = steps(incident)[5]
    with pytest.raises(Conflict):
        engine.step_skip(step_run_id=waiting.pk, actor=SYSTEM, reason="closing")
    with pytest.raises(DomainError):
        incident_transition(incident_id=incident.pk, to_status=IncidentStatus.RESOLVED, actor=SYSTEM)
