"""Automated runbook actions.

Each action takes the incident and the run and returns an ``Outcome``. Actions
are idempotent: they look at recorded state first, so a step re-run after a
worker crash never pages twice or books a second fallback carrier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from missions import services as mission_services
from missions.choices import AutonomyMode, MissionStatus, OfferKind, TenderStatus
from missions.events import Actor
from missions.models import Carrier, Mission, Tender
from missions.models.telemetry import TelemetrySnapshot
from missions.selectors import carrier_fit, fallback_price
from missions.telemetry.snapshots import telemetry_snapshot_freeze
from missions.tendering import dispatch
from missions.tendering.carrier_client import CarrierClient, CarrierError
from missions.tendering.channels import channel_for
from missions.tendering.circuit import CallRefused
from missions.terms import recovery_timeout_seconds
from missions.transitions import MISSION_ACTIVE, TENDER_OPEN
from runbooks.choices import IncidentStatus
from runbooks.models import Incident, RunbookRun, RunbookStep
from runbooks.pager import page_deliver, page_enqueue
from runbooks.services import incident_note_add, incident_transition

log = logging.getLogger(__name__)
AUTOMATION = Actor.system("runbook")


@dataclass
class Outcome:
    """What an action did: done, wait (re-check later) or failed (retry)."""

    state: str  # "done" | "wait" | "failed"
    result: dict[str, Any] = field(default_factory=dict)
    wait_seconds: float = 0.0
    context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def done(cls, **result: Any) -> Outcome:
        return cls("done", result)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls("failed", {"error": error})


Action = Callable[[Incident, RunbookRun, RunbookStep], Outcome]


def record_last_known(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    mission = incident.mission
    if mission is None:
        return Outcome.done(note="no mission linked")
    return Outcome.done(
        last_seen_at=mission.last_seen_at.isoformat() if mission.last_seen_at else None,
        last_lat=mission.last_lat,
        last_lon=mission.last_lon,
        last_speed_kph=mission.last_speed_kph,
        autonomy_mode=mission.autonomy_mode,
        mission_status=mission.status,
    )


def ping_vehicle(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    """Try the carrier's alternate channel (satellite ping) for the vehicle."""
    mission, carrier = incident.mission, incident.carrier
    vehicle = incident.vehicle or (mission.vehicle if mission else None)
    if carrier is None or vehicle is None or not carrier.api_base_url:
        return Outcome(
            "done",
            {"channel": "none", "note": "no alternate channel for this carrier"},
            context={"ping": "unavailable"},
        )
    try:
        with CarrierClient(carrier) as client:
            answer = client.vehicle_ping(vehicle.external_id)
    except (CarrierError, CallRefused) as exc:
        return Outcome(
            "done", {"channel": "ping", "reachable": False, "error": str(exc)[:200]}, context={"ping": "unreachable"}
        )
    safe_hold = bool(answer.get("safe_hold")) or answer.get("autonomy_mode") == AutonomyMode.SAFE_HOLD
    return Outcome(
        "done",
        {"channel": "ping", "reachable": True, "answer": answer},
        context={"ping": "safe_hold" if safe_hold else "reachable"},
    )


def contain_lost_comms(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    """Safe hold -> suspend the mission; safe hold or unreachable -> pause the fleet until verified."""
    ping = run.context.get("ping", "unavailable")
    mission, carrier = incident.mission, incident.carrier
    did: list[str] = []
    if ping == "safe_hold" and mission is not None:
        mission.refresh_from_db()
        if mission.status in (MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.ASSIGNED):
            mission_services.mission_transition(
                mission_id=mission.pk,
                to_status=MissionStatus.SUSPENDED,
                actor=AUTOMATION,
                reason=f"INC-{incident.pk}: vehicle in safe hold without comms",
            )
            did.append("mission suspended")
    if ping in ("safe_hold", "unreachable", "unavailable") and carrier is not None and carrier.is_autonomous:
        mission_services.carrier_fleet_pause(
            carrier_id=carrier.pk, actor=AUTOMATION, reason=f"INC-{incident.pk}: lost comms, fleet not verified"
        )
        did.append("fleet paused")
    return Outcome.done(ping=ping, actions=did or ["vehicle reachable: nothing to contain"])


def pause_fleet(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    carrier = incident.carrier
    if carrier is None or not carrier.is_autonomous:
        return Outcome.done(note="no autonomous fleet to pause")
    mission_services.carrier_fleet_pause(
        carrier_id=carrier.pk, actor=AUTOMATION, reason=f"INC-{incident.pk}: {incident.title}"
    )
    return Outcome.done(fleet_paused=carrier.slug)


def page_oncall(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    message = incident.pages.filter(event_action="trigger").order_by("id").first()
    if message is None:
        message = page_enqueue(incident_id=incident.pk, event_action="trigger", actor=AUTOMATION)
    assert message is not None
    if page_deliver(message_id=message.pk):
        return Outcome.done(paged=True, dedup_key=message.dedup_key)
    message.refresh_from_db()
    if message.last_error == "paging not configured":
        return Outcome.done(paged=False, note="paging not configured")
    return Outcome.failed(f"page not accepted: {message.last_error}")


def await_recovery(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    """Recovered when telemetry arrives after the incident opened; give up at the recovery timeout."""
    mission = incident.mission
    if mission is None:
        return Outcome("done", {"recovered": False}, context={"recovered": False})
    mission.refresh_from_db()
    if mission.last_seen_at and mission.last_seen_at > incident.triggered_at:
        incident.refresh_from_db()
        if incident.status in (IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED):
            with transaction.atomic():
                if mission.status == MissionStatus.SUSPENDED:
                    mission_services.mission_transition(
                        mission_id=mission.pk,
                        to_status=MissionStatus.EN_ROUTE,
                        actor=AUTOMATION,
                        reason="comms recovered",
                    )
                incident_transition(
                    incident_id=incident.pk,
                    to_status=IncidentStatus.RESOLVED,
                    actor=AUTOMATION,
                    note="telemetry resumed before the recovery timeout",
                )
        return Outcome(
            "done", {"recovered": True, "last_seen_at": mission.last_seen_at.isoformat()}, context={"recovered": True}
        )
    timeout = int(
        step.timeout_seconds or recovery_timeout_seconds(carrier_id=incident.carrier_id, today=timezone.now().date())
    )
    deadline = incident.triggered_at + timedelta(seconds=timeout)
    remaining = (deadline - timezone.now()).total_seconds()
    if remaining <= 0:
        return Outcome("done", {"recovered": False, "timeout_seconds": timeout}, context={"recovered": False})
    return Outcome("wait", {"waiting_until": deadline.isoformat()}, wait_seconds=min(remaining, 2.0))


def failover(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    """Hand the remaining leg to a pre-approved fallback carrier at its pre-approved price."""
    mission = incident.mission
    if mission is None:
        return Outcome("done", {"fallback": None, "note": "no mission"}, context={"fallback": None})
    shipment = mission.shipment
    existing = Tender.objects.filter(shipment=shipment, is_fallback=True, created_at__gte=incident.triggered_at)
    booked = Mission.objects.filter(replaces=mission).first()
    if booked is not None:
        return Outcome(
            "done", {"fallback": booked.carrier.slug, "mission": booked.pk}, context={"fallback": booked.carrier.slug}
        )
    waiting = existing.filter(status__in=TENDER_OPEN).select_related("carrier").first()
    if waiting is not None and channel_for(waiting.carrier) is not None:
        # Tendered over a channel (EDI): the carrier's answer (a 990) books it; expiry closes it.
        return Outcome(
            "wait", {"fallback": waiting.carrier.slug, "tender": waiting.pk, "awaiting": "answer"}, wait_seconds=2.0
        )
    declined = set(
        existing.exclude(status__in=[*TENDER_OPEN, TenderStatus.ACCEPTED]).values_list("carrier_id", flat=True)
    )
    candidates = [
        c
        for c in Carrier.objects.filter(is_fallback=True).exclude(pk=mission.carrier_id).order_by("name")
        if c.pk not in declined and carrier_fit(carrier=c, shipment=shipment).eligible
    ]
    if not candidates:
        incident_note_add(
            incident_id=incident.pk,
            actor=AUTOMATION,
            text="No fallback carrier fits this load: a local human pickup must be arranged.",
        )
        return Outcome("done", {"fallback": None}, context={"fallback": None, "no_fallback": True})
    carrier = candidates[0]
    if channel_for(carrier) is not None:
        return _failover_tender(incident, mission, carrier)
    with transaction.atomic():
        mission.refresh_from_db()
        if mission.status in MISSION_ACTIVE:
            mission_services.mission_transition(
                mission_id=mission.pk,
                to_status=MissionStatus.HANDED_OVER,
                actor=AUTOMATION,
                reason=f"INC-{incident.pk}: failover to {carrier.name}",
            )
        tender = existing.filter(carrier=carrier).first() or mission_services.tender_create(
            actor=AUTOMATION,
            shipment_id=shipment.pk,
            carrier_id=carrier.pk,
            offered_price_usd=fallback_price(carrier=carrier, shipment=shipment),
            is_fallback=True,
        )
        # The fallback rate is pre-approved: the booking is confirmed on the carrier's standing agreement.
        mission_services.offer_record(
            tender_id=tender.pk,
            actor=AUTOMATION,
            kind=OfferKind.ACCEPT,
            price_usd=tender.offered_price_usd,
            source="pre-approved",
            reason="standing fallback agreement",
        )
        new_mission = Mission.objects.get(tender=tender)
        now = timezone.now()
        Incident.objects.filter(pk=incident.pk, failover_at__isnull=True).update(
            failover_at=now, time_to_failover_seconds=(now - incident.triggered_at).total_seconds()
        )
    return Outcome(
        "done",
        {"fallback": carrier.slug, "mission": new_mission.pk, "price_usd": str(tender.offered_price_usd)},
        context={"fallback": carrier.slug},
    )


def _failover_tender(incident: Incident, mission: Mission, carrier: Carrier) -> Outcome:
    """Tender the remaining leg to a fallback carrier that answers tenders itself (over EDI), then wait.

    The pre-approved rate travels in the tender; the booking is the carrier's acceptance (a 990),
    so a carrier without a driver free can decline and the next fallback carrier is tried.
    """
    shipment = mission.shipment
    with transaction.atomic():
        mission.refresh_from_db()
        if mission.status in MISSION_ACTIVE:
            mission_services.mission_transition(
                mission_id=mission.pk,
                to_status=MissionStatus.HANDED_OVER,
                actor=AUTOMATION,
                reason=f"INC-{incident.pk}: failover to {carrier.name}",
            )
        tender = mission_services.tender_create(
            actor=AUTOMATION,
            shipment_id=shipment.pk,
            carrier_id=carrier.pk,
            offered_price_usd=fallback_price(carrier=carrier, shipment=shipment),
            is_fallback=True,
        )
        dispatch.tender_publish(tender_id=tender.pk)
        now = timezone.now()
        Incident.objects.filter(pk=incident.pk, failover_at__isnull=True).update(
            failover_at=now, time_to_failover_seconds=(now - incident.triggered_at).total_seconds()
        )
    return Outcome(
        "wait",
        {"fallback": carrier.slug, "tender": tender.pk, "price_usd": str(tender.offered_price_usd)},
        wait_seconds=2.0,
    )


def suspend_mission(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    mission = incident.mission
    if mission is None:
        return Outcome.done(note="no mission")
    mission.refresh_from_db()
    if mission.status in (MissionStatus.ASSIGNED, MissionStatus.EN_ROUTE, MissionStatus.ARRIVING):
        mission_services.mission_transition(
            mission_id=mission.pk,
            to_status=MissionStatus.SUSPENDED,
            actor=AUTOMATION,
            reason=f"INC-{incident.pk}: {incident.title}",
        )
        return Outcome.done(suspended=True)
    return Outcome.done(suspended=False, mission_status=mission.status)


def freeze_snapshot(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    mission = incident.mission
    if mission is None:
        return Outcome.done(note="no mission")
    snapshot = TelemetrySnapshot.objects.filter(mission=mission).order_by("-id").first()
    if snapshot is None or snapshot.created_at < incident.triggered_at - timedelta(minutes=5):
        snapshot = telemetry_snapshot_freeze(mission_id=mission.pk, reason=f"incident {incident.pk}")
    if snapshot is None:
        return Outcome.done(snapshot=None, note="no telemetry in the window")
    return Outcome.done(snapshot=snapshot.pk, sha256=snapshot.sha256, events=snapshot.event_count)


ACTIONS: dict[str, Action] = {
    "record_last_known": record_last_known,
    "ping_vehicle": ping_vehicle,
    "contain_lost_comms": contain_lost_comms,
    "pause_fleet": pause_fleet,
    "page_oncall": page_oncall,
    "await_recovery": await_recovery,
    "failover": failover,
    "suspend_mission": suspend_mission,
    "freeze_snapshot": freeze_snapshot,
}


def action_register(name: str, action: Action) -> None:
    """Let an app above runbooks provide a step action (the SLA engine's ``gather_evidence``)."""
    ACTIONS[name] = action
