"""The only code that writes incidents."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from missions.events import Actor
from missions.models import Carrier, Mission, TelemetrySample, Vehicle
from runbooks.choices import PIN_MINUTES, IncidentSeverity, IncidentStatus
from runbooks.definitions import RUNBOOKS
from runbooks.models import Incident, Runbook, RunbookStep
from runbooks.pager import page_enqueue
from runbooks.records import incident_event
from runbooks.transitions import INCIDENT_OPEN, INCIDENT_TRANSITIONS
from tms_console import tracing
from tms_console.domain import DomainError, transition_check

_TIMESTAMP_FOR = {
    IncidentStatus.ACKNOWLEDGED: "acknowledged_at",
    IncidentStatus.MITIGATED: "mitigated_at",
    IncidentStatus.RESOLVED: "resolved_at",
    IncidentStatus.CLOSED: "closed_at",
}


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
                    incident_event(
                        existing, actor=actor, action="incident.repeated", data={"summary": summary, **(data or {})}
                    )
                    return existing, False
                incident = _incident_create(
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
                incident_event(
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


def _incident_create(**fields: Any) -> Incident:
    """Create the incident in a trace of its own, linked to (and pinning) its mission's trace."""
    mission: Mission | None = fields.get("mission")
    pinned = mission.traceparent if mission is not None else ""
    with tracing.span_from(
        f"incident opened: {fields['kind']}",
        new_trace=True,
        links=[tracing.link_to(pinned, reason="led to the incident")],
        mission_id=mission.pk if mission is not None else None,
        carrier=fields["carrier"].slug if fields.get("carrier") is not None else None,
        vehicle=fields["vehicle"].external_id if fields.get("vehicle") is not None else None,
        correlation_id=fields.get("correlation_id"),
    ) as span:
        incident = Incident.objects.create(
            **fields, traceparent=tracing.current_traceparent(), pinned_traceparent=pinned
        )
        span.set_attributes(tracing.tms_attributes(incident_id=incident.pk))
    return incident


@transaction.atomic
def incident_transition(
    *, incident_id: int, to_status: str, actor: Actor, note: str = "", review: str = ""
) -> Incident:
    """Move an incident along its state machine; closing needs a written review."""
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("mission__shipment", "carrier")
        .get(pk=incident_id)
    )
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
    if to_status == IncidentStatus.RESOLVED and incident.resolved_at is not None:
        # MTTR input for the SLA engine: from detection to resolution.
        incident.time_to_recovery_seconds = (incident.resolved_at - incident.triggered_at).total_seconds()
        fields.append("time_to_recovery_seconds")
    incident.save(update_fields=fields)
    page_action = {IncidentStatus.ACKNOWLEDGED: "acknowledge", IncidentStatus.RESOLVED: "resolve"}.get(
        IncidentStatus(to_status)
    )
    if page_action is not None:
        _page_after_commit(incident_id=incident.pk, event_action=page_action, actor=actor)
    incident_event(
        incident,
        actor=actor,
        action="incident.status_changed",
        before={"status": before},
        after={"status": to_status},
        data={"note": note} if note else None,
    )
    return incident


def _page_after_commit(*, incident_id: int, event_action: str, actor: Actor) -> None:
    """Queue the PagerDuty acknowledge/resolve that mirrors an on-call action (only after a trigger)."""
    page_enqueue(incident_id=incident_id, event_action=event_action, actor=actor, deliver_after_commit=True)


@transaction.atomic
def incident_severity_change(*, incident_id: int, severity: str, actor: Actor, note: str = "") -> Incident:
    """Set an open incident's severity (nothing when it already has it, or is no longer open)."""
    incident = Incident.objects.select_for_update(of=("self",)).get(pk=incident_id)
    severity = IncidentSeverity(severity)
    if incident.severity == severity or incident.status not in INCIDENT_OPEN:
        return incident
    before = incident.severity
    incident.severity = severity
    incident.save(update_fields=["severity"])
    incident_event(
        incident,
        actor=actor,
        action="incident.severity_changed",
        before={"severity": before},
        after={"severity": severity},
        data={"note": note} if note else None,
    )
    return incident


def incident_alerts_cleared(*, incident_id: int, actor: Actor, note: str) -> Incident:
    """The alerts that opened an incident have resolved: mark it mitigated, for review (once)."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update(of=("self",)).get(pk=incident_id)
        if incident.status not in (IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED):
            incident_event(incident, actor=actor, action="incident.alerts_cleared", data={"note": note})
            return incident
    return incident_transition(incident_id=incident_id, to_status=IncidentStatus.MITIGATED, actor=actor, note=note)


@transaction.atomic
def incident_note_add(*, incident_id: int, actor: Actor, text: str) -> Incident:
    if not text.strip():
        raise DomainError("A note cannot be empty.", field="text")
    incident = Incident.objects.select_related("mission__shipment", "carrier").get(pk=incident_id)
    incident_event(incident, actor=actor, action="incident.note", data={"text": text.strip()[:5000]})
    return incident


@transaction.atomic
def incident_assign(*, incident_id: int, actor: Actor, assignee: AbstractBaseUser | None) -> Incident:
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("mission__shipment", "carrier")
        .get(pk=incident_id)
    )
    before = incident.assignee.get_username() if incident.assignee else None
    incident.assignee = assignee  # type: ignore[assignment]
    incident.save(update_fields=["assignee"])
    incident_event(
        incident,
        actor=actor,
        action="incident.assigned",
        before={"assignee": before},
        after={"assignee": assignee.get_username() if assignee else None},
    )
    return incident


# --- Incidents raised by the domain ------------------------------------------------

EXCEPTION_TO_INCIDENT: dict[str, tuple[str, str]] = {
    "lost_comms": ("lost_comms", IncidentSeverity.CRITICAL),
    "degraded_sensors": ("degraded_autonomy", IncidentSeverity.ERROR),
    "mode_degraded": ("degraded_autonomy", IncidentSeverity.ERROR),
    "human_intervention_required": ("degraded_autonomy", IncidentSeverity.ERROR),
    "emergency_stop": ("emergency_stop", IncidentSeverity.CRITICAL),
    "collision_avoidance": ("emergency_stop", IncidentSeverity.CRITICAL),
    "ota_failure": ("ota_failure", IncidentSeverity.ERROR),
}


def telemetry_pin(*, mission: Mission, at: Any) -> list[dict[str, Any]]:
    """The mission's long-term samples of the last 30 minutes, as plain JSON."""
    from datetime import timedelta

    rows = (
        TelemetrySample.objects.filter(
            mission=mission, recorded_at__gte=at - timedelta(minutes=PIN_MINUTES), recorded_at__lte=at
        )
        .order_by("recorded_at")
        .values("recorded_at", "lat", "lon", "speed_kph", "heading_deg", "autonomy_mode")[: PIN_MINUTES * 60]
    )
    return [{**r, "recorded_at": r["recorded_at"].isoformat()} for r in rows]


def runbooks_seed(**_: Any) -> int:
    """Create version 1 of each built-in runbook whose slug does not exist yet."""

    created = 0
    for spec in RUNBOOKS:
        if Runbook.objects.filter(slug=spec["slug"]).exists():
            continue
        with transaction.atomic():
            runbook = Runbook.objects.create(
                slug=spec["slug"],
                name=spec["name"],
                incident_kind=spec["incident_kind"],
                description=spec["description"],
            )
            RunbookStep.objects.bulk_create(
                RunbookStep(
                    runbook=runbook,
                    position=i,
                    title=step["title"],
                    kind=step["kind"],
                    action=step.get("action", ""),
                    params=step.get("params", {}),
                    instructions=step.get("instructions", ""),
                    timeout_seconds=step.get("timeout_seconds"),
                )
                for i, step in enumerate(spec["steps"], start=1)
            )
            created += 1
    return created


def incident_repage(*, incident_id: int, actor: Actor) -> None:
    """On-call asks for another page (a new trigger with the same dedup key)."""
    with transaction.atomic():
        incident = Incident.objects.get(pk=incident_id)
        if incident.status not in INCIDENT_OPEN:
            raise DomainError(f"INC-{incident.pk} is {incident.status}; only an open incident is paged.")
        page_enqueue(incident_id=incident_id, event_action="trigger", actor=actor, deliver_after_commit=True)
