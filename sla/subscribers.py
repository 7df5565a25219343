"""What the SLA engine reacts to, in a worker.

- A finished mission re-evaluates its carrier's SLIs, unless the carrier was evaluated less than
  ``SLA_FINISH_EVALUATION_INTERVAL_SECONDS`` ago: then beat's next evaluation takes the mission in
  (a carrier finishing missions every few seconds is evaluated a few times a minute, not each time).
- A lost-comms gap filled by a store-and-forward upload (``mission.telemetry_backfilled``)
  recomputes the telemetry-integrity SLI over the windows that hold the gap
  (``services.sla_recompute_after_backfill``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from missions.choices import MissionStatus
from missions.models import AuditEvent
from missions.subscriptions import event_subscribe
from missions.telemetry.gaps import BACKFILLED_ACTION
from sla import selectors, services

FINISHED = frozenset({MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.HANDED_OVER})


def on_mission_finished(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    if event.carrier_id is None:
        return
    interval = float(settings.SLA_FINISH_EVALUATION_INTERVAL_SECONDS)
    now = timezone.now()
    if interval > 0 and selectors.evaluated_since(event.carrier_id, now - timedelta(seconds=interval), now):
        return
    services.sla_evaluate(carrier_id=event.carrier_id)


def on_telemetry_backfilled(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    data = event.data or {}
    if event.carrier_id is None or not data.get("silence_start") or not data.get("silence_end"):
        return
    services.sla_recompute_after_backfill(
        carrier_id=event.carrier_id,
        silence_start=datetime.fromisoformat(str(data["silence_start"])),
        silence_end=datetime.fromisoformat(str(data["silence_end"])),
        cause_event_id=event.pk,
    )


def register() -> None:
    event_subscribe(
        name="sla.evaluate_on_mission_finished",
        actions={"mission.status_changed"},
        handler=on_mission_finished,
        when=lambda event: (event.after or {}).get("status") in FINISHED,
    )
    event_subscribe(
        name="sla.recompute_on_telemetry_backfilled",
        actions={BACKFILLED_ACTION},
        handler=on_telemetry_backfilled,
    )
