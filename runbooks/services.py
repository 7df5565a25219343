"""The only code that writes incidents."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from missions.events import Actor, event_record
from missions.models import Carrier, Mission, Vehicle
from runbooks.choices import IncidentSeverity, IncidentStatus
from runbooks.models import Incident
from runbooks.transitions import INCIDENT_OPEN, INCIDENT_TRANSITIONS
from tms_console.domain import DomainError, transition_check

_TIMESTAMP_FOR = {
    IncidentStatus.ACKNOWLEDGED: "acknowledged_at",
    IncidentStatus.MITIGATED: "mitigated_at",
    IncidentStatus.RESOLVED: "resolved_at",
    IncidentStatus.CLOSED: "closed_at",
}


def _incident_event(incident: Incident, *, actor: Actor, action: str, **kwargs: Any) -> None:
    event_record(
        actor=actor,
        action=action,
        subject_type="incident",
        subject_id=incident.pk,
        correlation_id=incident.correlation_id,
        mission=incident.mission,
        carrier=incident.carrier,
        shipment=incident.mission.shipment if incident.mission_id and incident.mission else None,
        incident_id=incident.pk,
        **kwargs,
    )


def incident_open(
    *,
    actor: Actor,
    kind: str,
    title: str,
    severity: str = IncidentSeverity.ERROR,
    mission: Mission | None = None,
    vehicle: Vehicle | None = None,
    carrier: Carrier | None = None,
    summary: str = "",
    data: dict[str, Any] | None = None,
) -> tuple[Incident, bool]:
    """Open an incident, or add to the open one with the same mission and kind.

    Returns ``(incident, created)``. A partial unique index backs the dedupe,
    so two workers racing on the same gap still end with one incident.
    """
    subject = f"mission:{mission.pk}" if mission else f"carrier:{carrier.pk}" if carrier else f"title:{title}"
    dedupe_key = f"{kind}:{subject}"
    for _ in range(2):
        try:
            with transaction.atomic():
                existing = (
                    Incident.objects.select_for_update().filter(dedupe_key=dedupe_key, status__in=INCIDENT_OPEN).first()
                )
                if existing is not None:
                    _incident_event(
                        existing, actor=actor, action="incident.repeated", data={"summary": summary, **(data or {})}
                    )
                    return existing, False
                incident = Incident.objects.create(
                    title=title[:200],
                    kind=kind,
                    severity=severity,
                    mission=mission,
                    vehicle=vehicle or (mission.vehicle if mission else None),
                    carrier=carrier or (mission.carrier if mission else None),
                    correlation_id=mission.correlation_id if mission else None,
                    dedupe_key=dedupe_key,
                    summary=summary,
                    triggered_at=timezone.now(),
                )
                _incident_event(
                    incident,
                    actor=actor,
                    action="incident.triggered",
                    after={"status": incident.status, "severity": severity, "kind": kind},
                    data=data,
                )
                return incident, True
        except IntegrityError:
            continue  # another process opened it first: join that one
    raise DomainError("Could not open or join the incident; try again.")


@transaction.atomic
def incident_transition(
    *, incident_id: int, to_status: str, actor: Actor, note: str = "", review: str = ""
) -> Incident:
    """Move an incident along its state machine; closing needs a written review."""
    incident = Incident.objects.select_for_update().select_related("mission__shipment", "carrier").get(pk=incident_id)
    transition_check(machine="incident", table=INCIDENT_TRANSITIONS, current=incident.status, target=to_status)
    if to_status == IncidentStatus.CLOSED and not (review or incident.review).strip():
        raise DomainError("An incident is closed with a post-incident review.", field="review")
    before = incident.status
    incident.status = to_status
    fields = ["status"]
    stamp = _TIMESTAMP_FOR.get(IncidentStatus(to_status))
    if stamp and getattr(incident, stamp) is None:
        setattr(incident, stamp, timezone.now())
        fields.append(stamp)
    if to_status == IncidentStatus.ACKNOWLEDGED and incident.assignee_id is None and actor.user is not None:
        incident.assignee = actor.user  # type: ignore[assignment]
        fields.append("assignee")
    if review:
        incident.review = review
        fields.append("review")
    if to_status == IncidentStatus.TRIGGERED:
        # Reopened: the incident needs resolving again.
        incident.resolved_at = None
        fields.append("resolved_at")
    incident.save(update_fields=fields)
    _incident_event(
        incident,
        actor=actor,
        action="incident.status_changed",
        before={"status": before},
        after={"status": to_status},
        data={"note": note} if note else None,
    )
    return incident


@transaction.atomic
def incident_note_add(*, incident_id: int, actor: Actor, text: str) -> Incident:
    if not text.strip():
        raise DomainError("A note cannot be empty.", field="text")
    incident = Incident.objects.select_related("mission__shipment", "carrier").get(pk=incident_id)
    _incident_event(incident, actor=actor, action="incident.note", data={"text": text.strip()[:5000]})
    return incident


@transaction.atomic
def incident_assign(*, incident_id: int, actor: Actor, assignee: AbstractBaseUser | None) -> Incident:
    incident = Incident.objects.select_for_update().select_related("mission__shipment", "carrier").get(pk=incident_id)
    before = incident.assignee.get_username() if incident.assignee else None
    incident.assignee = assignee  # type: ignore[assignment]
    incident.save(update_fields=["assignee"])
    _incident_event(
        incident,
        actor=actor,
        action="incident.assigned",
        before={"assignee": before},
        after={"assignee": assignee.get_username() if assignee else None},
    )
    return incident
