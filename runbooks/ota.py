"""The OTA-failure incident: opened from the OTA capability's refusals, closed by on-call resuming the fleet.

* A vehicle whose reported software the carrier's signed metadata does not back
  (``vehicle.software_refused``), or a refresh of the carrier's TUF metadata refused
  for a security reason (expired, rollback, bad signature: ``ota_repository.refresh_failed``
  with ``security``), opens (or joins) the carrier's open "OTA deployment failure"
  incident and starts its runbook, whose ``pause_fleet`` step pauses autonomous
  tendering to the fleet (the playbook's degradation pattern).
* On-call resumes the fleet from the incident page once every vehicle of the carrier
  that reported a version runs a verified one (``ota_fleet_resume``).
"""

from __future__ import annotations

from django.db import transaction

from missions import services as mission_services
from missions.events import Actor
from missions.models import Carrier, Vehicle
from missions.ota.selectors import FleetSoftware, fleet_software
from runbooks.choices import IncidentKind, IncidentSeverity, IncidentStatus
from runbooks.engine import runbook_start
from runbooks.models import Incident
from runbooks.services import incident_note_add, incident_open, incident_transition
from runbooks.transitions import INCIDENT_OPEN
from tms_console.domain import DomainError

DETECTOR = Actor.system("ota")


def _open(*, carrier: Carrier, vehicle: Vehicle | None, title: str, summary: str, data: dict[str, object]) -> Incident:
    with transaction.atomic():
        incident, created = incident_open(
            actor=DETECTOR,
            kind=IncidentKind.OTA_FAILURE,
            severity=IncidentSeverity.CRITICAL,
            carrier=carrier,
            vehicle=vehicle,
            title=title,
            summary=summary,
            data=data,
        )
        if created:
            runbook_start(incident_id=incident.pk, actor=DETECTOR)
    return incident


def incident_from_software_refused(*, vehicle_id: int, version: str, code: str, reason: str) -> Incident:
    """Open (or join) the carrier's OTA-failure incident for a vehicle running software its metadata does not back."""
    vehicle = Vehicle.objects.select_related("carrier").get(pk=vehicle_id)
    return _open(
        carrier=vehicle.carrier,
        vehicle=vehicle,
        title=f"{vehicle.carrier.name}: {vehicle.external_id} runs unverified software {version}"[:200],
        summary=f"{reason} Autonomous tendering to the fleet is paused until every vehicle reports a verified "
        "version and on-call resumes it.",
        data={"vehicle_id": vehicle.external_id, "version": version, "code": code},
    )


def incident_from_refresh_refused(*, carrier_id: int, role: str, kind: str, reason: str) -> Incident:
    carrier = Carrier.objects.get(pk=carrier_id)
    return _open(
        carrier=carrier,
        vehicle=None,
        title=f"{carrier.name}: TUF metadata of its {role} repository refused ({kind})"[:200],
        summary=f"{reason} No vehicle software of this carrier verifies until its metadata does.",
        data={"role": role, "kind": kind},
    )


def ota_resume_state(*, incident: Incident) -> FleetSoftware | None:
    """What the incident page shows under an OTA incident: the fleet's verified and refused software."""
    if incident.kind != IncidentKind.OTA_FAILURE or incident.carrier_id is None:
        return None
    return fleet_software(incident.carrier_id)


def ota_fleet_resume(*, incident_id: int, actor: Actor, confirmation: str) -> Incident:
    """Resume the carrier's fleet and resolve the incident, once no vehicle of it runs refused software."""
    if not confirmation.strip():
        raise DomainError("Say what was fixed: resuming a paused fleet needs a recorded confirmation.", field="note")
    incident = Incident.objects.select_related("carrier").get(pk=incident_id)
    if incident.kind != IncidentKind.OTA_FAILURE or incident.carrier is None:
        raise DomainError("Only an OTA-failure incident of a carrier resumes a fleet from here.")
    state = fleet_software(incident.carrier.pk)
    if not state.resumable:
        still = ", ".join(
            f"{r.vehicle.external_id} ({r.version}: {r.get_status_display().lower()})" for r in state.refused
        )
        raise DomainError(f"Not yet: vehicles still run unverified software: {still}.")
    with transaction.atomic():
        mission_services.carrier_fleet_resume(
            carrier_id=incident.carrier.pk, actor=actor, confirmation=f"INC-{incident.pk}: {confirmation.strip()}"
        )
        verified = ", ".join(f"{r.vehicle.external_id} {r.version}" for r in state.verified) or "none reported"
        incident_note_add(
            incident_id=incident.pk,
            actor=actor,
            text=f"Fleet resumed: every reporting vehicle runs verified software ({verified}). {confirmation.strip()}",
        )
        if incident.status in INCIDENT_OPEN:
            incident_transition(
                incident_id=incident.pk, to_status=IncidentStatus.RESOLVED, actor=actor, note="fleet resumed"
            )
    incident.refresh_from_db()
    return incident
