"""The signed statement about an incident's post-incident review (registered with the evidence log)."""

from __future__ import annotations

from typing import Any

from missions.evidence import dsse
from missions.evidence.selectors import event_fields, plain, statement_builder_register
from missions.models import AuditEvent
from missions.models.evidence import AttestationKind
from runbooks.models import Incident


def incident_review_statement(subject_id: int, event: AuditEvent | None) -> tuple[dict[str, Any], int | None] | None:
    """The review of a closed incident; None when it was closed without one."""
    incident = Incident.objects.select_related("carrier", "mission").get(pk=subject_id)
    if not incident.review.strip():
        return None
    record = plain(
        {
            "incident": incident.pk,
            "title": incident.title,
            "kind": incident.kind,
            "severity": incident.severity,
            "status": incident.status,
            "mission": incident.mission_id,
            "carrier": incident.carrier.slug if incident.carrier else None,
            "correlationId": incident.correlation_id,
            "triggeredAt": incident.triggered_at,
            "acknowledgedAt": incident.acknowledged_at,
            "resolvedAt": incident.resolved_at,
            "closedAt": incident.closed_at,
            "summary": incident.summary,
            "review": incident.review,
            **event_fields(event),
        }
    )
    return dsse.incident_review_statement(incident_ref=str(incident.pk), record=record), incident.mission_id


def register() -> None:
    statement_builder_register(AttestationKind.INCIDENT_REVIEW, incident_review_statement)
