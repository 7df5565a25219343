"""The event record of an incident: every write to an incident, its runbook and its pages leaves one."""

from __future__ import annotations

from typing import Any

from missions.events import Actor, event_record
from runbooks.models import Incident


def incident_event(incident: Incident, *, actor: Actor, action: str, **kwargs: Any) -> None:
    """Record ``action`` on the incident's timeline (and its mission's and carrier's), in the caller's transaction."""
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
