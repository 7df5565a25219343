"""What the SLA engine reacts to: a finished mission re-evaluates its carrier's SLIs in a worker."""

from __future__ import annotations

from typing import Any

from missions.choices import MissionStatus
from missions.models import AuditEvent
from missions.subscriptions import event_subscribe
from sla import services

FINISHED = frozenset({MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.HANDED_OVER})


def on_mission_finished(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    if event.carrier_id is not None:
        services.sla_evaluate(carrier_id=event.carrier_id)


def register() -> None:
    event_subscribe(
        name="sla.evaluate_on_mission_finished",
        actions={"mission.status_changed"},
        handler=on_mission_finished,
        when=lambda event: (event.after or {}).get("status") in FINISHED,
    )
