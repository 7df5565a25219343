"""Read queries for the incident pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from missions.models import AuditEvent
from missions.models.telemetry import TelemetrySnapshot
from runbooks.choices import PIN_MINUTES, StepKind, StepStatus
from runbooks.models import Incident, StepRun


def incident_steps(*, incident: Incident) -> list[dict[str, Any]]:
    """The incident's runbook steps with what on-call may do on each."""
    rows = []
    for step_run in StepRun.objects.filter(run__incident=incident).select_related("step").order_by("step__position"):
        step = step_run.step
        finished = step_run.status in (StepStatus.DONE, StepStatus.SKIPPED)
        rows.append(
            {
                "run": step_run,
                "step": step,
                "can_confirm": step.kind == StepKind.MANUAL and step_run.status == StepStatus.WAITING,
                "can_retry": step.kind == StepKind.AUTOMATED
                and step_run.status in (StepStatus.FAILED, StepStatus.WAITING),
                "can_skip": not finished and step_run.status != StepStatus.RUNNING,
            }
        )
    return rows


def incident_review_template(*, incident: Incident) -> str:
    """A prefilled post-incident review: timeline, telemetry, SLO impact and credits, follow-ups."""
    lines = [f"Post-incident review: INC-{incident.pk} {incident.title}", ""]
    lines.append("Summary:")
    lines.append("  What happened, impact on the shipment, how it was detected.")
    lines.append("")
    lines.append("Timeline (UTC):")
    for event in AuditEvent.objects.filter(incident_id=incident.pk).order_by("id")[:60]:
        lines.append(f"  {event.occurred_at:%Y-%m-%d %H:%M:%S}  {event.action}  ({event.actor_label})")
    lines.append("")
    lines.append(f"Telemetry pinned at detection: {len(incident.pinned_telemetry)} samples (last 30 minutes).")
    if incident.mission_id:
        for snap in TelemetrySnapshot.objects.filter(mission_id=incident.mission_id).order_by("-id")[:3]:
            lines.append(f"  snapshot #{snap.pk} ({snap.reason}): {snap.event_count} events, sha256 {snap.sha256}")
    lines.append("")
    lines.append("SLO impact and credits:")
    if incident.time_to_failover_seconds is not None:
        lines.append(f"  time to failover: {incident.time_to_failover_seconds:.0f} s")
    if incident.time_to_recovery_seconds is not None:
        lines.append(f"  time to recovery: {incident.time_to_recovery_seconds:.0f} s")
    lines.append("  SLIs affected, error budget consumed, credits triggered (see the SLA page).")
    lines.append("")
    lines.append("What we change:")
    lines.append("  - ")
    return "\n".join(lines)


@dataclass(frozen=True)
class TelemetryWindow:
    """The vehicle's telemetry pinned when the incident opened, summed up for the incident page.

    ``per_minute``: the last sample of each minute, oldest first, so 30 minutes read as at most 30 rows.
    """

    samples: int
    minutes: int
    first_at: datetime | None = None
    last_at: datetime | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    last_speed_kph: float | None = None
    max_speed_kph: float | None = None
    autonomy_mode: str = ""
    per_minute: list[dict[str, Any]] = field(default_factory=list)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def incident_telemetry_window(*, incident: Incident) -> TelemetryWindow:
    """The pinned samples (``Incident.pinned_telemetry``: recorded_at, lat, lon, speed, heading, mode) summed up."""
    samples = [{**s, "recorded_at": _when(s.get("recorded_at"))} for s in incident.pinned_telemetry or []]
    samples = [s for s in samples if s["recorded_at"] is not None]
    if not samples:
        return TelemetryWindow(samples=0, minutes=PIN_MINUTES)
    last = samples[-1]
    speeds = [s["speed_kph"] for s in samples if s.get("speed_kph") is not None]
    by_minute: dict[datetime, dict[str, Any]] = {}
    for sample in samples:
        by_minute[sample["recorded_at"].replace(second=0, microsecond=0)] = sample
    return TelemetryWindow(
        samples=len(samples),
        minutes=PIN_MINUTES,
        first_at=samples[0]["recorded_at"],
        last_at=last["recorded_at"],
        last_lat=last.get("lat"),
        last_lon=last.get("lon"),
        last_speed_kph=last.get("speed_kph"),
        max_speed_kph=max(speeds) if speeds else None,
        autonomy_mode=str(last.get("autonomy_mode") or ""),
        per_minute=list(by_minute.values()),
    )
