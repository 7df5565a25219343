"""What the OTA capability reacts to: a vehicle reporting a new software version in telemetry.

The telemetry pipeline records ``vehicle.software_reported`` only when a vehicle's version
changes; the check runs in a worker after that commit, never on the ingest path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from missions.models import AuditEvent
from missions.ota.services import vehicle_software_check
from missions.subscriptions import event_subscribe


def on_software_reported(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    data = event.data or {}
    vehicle_software_check(
        vehicle_id=event.subject_id,
        version=str(data["version"]),
        reported_at=datetime.fromisoformat(str(data["ts"])) if data.get("ts") else event.occurred_at,
    )


def register() -> None:
    event_subscribe(name="ota.software_check", actions={"vehicle.software_reported"}, handler=on_software_reported)
