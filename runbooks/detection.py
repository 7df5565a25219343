"""Incidents from what the core reports: mission exceptions, carrier breaker trips, tenders out of sync.

Called by the subscribers in ``runbooks.subscribers`` after the core's change
has committed. Each is idempotent: an open incident with the same mission (or
carrier) and kind is joined, never duplicated, and its runbook starts once.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from missions.events import Actor
from missions.models import Carrier, MissionException, Tender
from runbooks.engine import runbook_start
from runbooks.models import Incident
from runbooks.services import EXCEPTION_TO_INCIDENT, incident_open, telemetry_pin

BREAKER = Actor.system("circuit-breaker")


def incident_from_exception(*, exception_id: int) -> Incident | None:
    """Open (or join) the incident for a mission exception and start its runbook."""
    exc = MissionException.objects.select_related("mission__carrier", "mission__vehicle").get(pk=exception_id)
    mapping = EXCEPTION_TO_INCIDENT.get(exc.kind)
    if mapping is None:
        return None
    kind, severity = mapping
    mission = exc.mission
    vehicle = mission.vehicle.external_id if mission.vehicle else "vehicle"
    with transaction.atomic():
        incident, created = incident_open(
            actor=Actor.system("detector"),
            kind=kind,
            severity=severity,
            mission=mission,
            title=f"{exc.get_kind_display()}: {vehicle} on mission {mission.pk}",
            summary=exc.detail,
            data={"exception_id": exc.pk, "exception_kind": exc.kind},
        )
        if created:
            Incident.objects.filter(pk=incident.pk).update(
                pinned_telemetry=telemetry_pin(mission=mission, at=incident.triggered_at)
            )
            runbook_start(incident_id=incident.pk, actor=Actor.system("detector"))
    return incident


def incident_from_breaker_trip(*, carrier_id: int, reason: str, consecutive_failures: int | None) -> Incident:
    """Open (or join) the "carrier API down" incident for a carrier whose circuit opened."""
    carrier = Carrier.objects.get(pk=carrier_id)
    data: dict[str, Any] = {"reason": reason, "consecutive_failures": consecutive_failures}
    incident, _ = incident_open(
        actor=BREAKER,
        kind="carrier_api_down",
        title=f"{carrier.name} API failing: circuit open",
        carrier=carrier,
        summary=f"Calls to {carrier.name} are failing ({reason}); tendering to it is paused.",
        data=data,
    )
    return incident


def incident_from_tender_out_of_sync(*, tender_id: int, reason: str) -> Incident:
    """Open (or join) the carrier's "tender out of sync" incident: it lost a tender it had confirmed,
    or its answers about one kept breaking the contract (``missions.tendering.polling``).

    One open incident per carrier; each further tender is added to it as a repeat.
    """
    tender = Tender.objects.select_related("carrier", "shipment").get(pk=tender_id)
    carrier = tender.carrier
    incident, _ = incident_open(
        actor=Actor.system("status-poll"),
        kind="tender_out_of_sync",
        title=f"{carrier.name}: tenders out of sync with the console",
        carrier=carrier,
        summary=f"Tender {tender.pk} ({tender.shipment.reference}, carrier ref {tender.external_ref or 'none'}): "
        f"{reason} Ask the carrier what happened to it; the shipment's waterfall has moved on.",
        data={"tender_id": tender.pk, "shipment_id": tender.shipment_id, "reason": reason},
    )
    return incident
