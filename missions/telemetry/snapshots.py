"""Freezing the full-fidelity window of a mission into a hashed snapshot (evidence for diagnostics)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from missions.events import Actor, event_record
from missions.models import Mission, TelemetrySample
from missions.models.telemetry import TelemetrySnapshot, TelemetryWindowEvent
from missions.telemetry.normalize import SCHEMA_VERSION, ts_format


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the bytes the snapshot hash is over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def snapshot_digest(events: list[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical_json(events)).hexdigest()


@transaction.atomic
def telemetry_snapshot_freeze(
    *,
    mission_id: int,
    reason: str,
    at: datetime | None = None,
    exception_id: int | None = None,
    trigger_event_id: uuid.UUID | None = None,
) -> TelemetrySnapshot:
    """Copy the mission's window events of the ``TELEMETRY_WINDOW_SECONDS`` up to ``at`` into a snapshot.

    Runs in the transaction that stored the triggering event, so that event is
    part of what gets frozen. Call it for an exception reported by any path
    (API, gap detection) to keep the moments before it.
    """
    end = at or timezone.now()
    start = end - timedelta(seconds=settings.TELEMETRY_WINDOW_SECONDS)
    events = telemetry_window(mission_id=mission_id, start=start, end=end)
    snapshot = TelemetrySnapshot.objects.create(
        mission_id=mission_id,
        reason=reason[:80],
        trigger_event_id=trigger_event_id,
        exception_id=exception_id,
        window_start=start,
        window_end=end,
        events=events,
        event_count=len(events),
        sha256=snapshot_digest(events),
    )
    # The evidence log subscribes to this event and attests the snapshot after commit.
    mission = Mission.objects.select_related("shipment", "carrier").get(pk=mission_id)
    event_record(
        actor=Actor.system("telemetry"),
        action="telemetry.snapshot_frozen",
        subject_type="snapshot",
        subject_id=snapshot.pk,
        after={"events": snapshot.event_count, "sha256": snapshot.sha256},
        data={"reason": snapshot.reason, "exception_id": exception_id},
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    return snapshot


def telemetry_window(*, mission_id: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every accepted event of the mission recorded in [start, end], as normalized wire events, in time order.

    The 1 Hz samples hold the events they were taken from whole; the window
    rows with a payload hold the rest of each second.
    """
    mission = Mission.objects.select_related("vehicle").get(pk=mission_id)
    samples = TelemetrySample.objects.filter(
        mission_id=mission_id, recorded_at__gte=start, recorded_at__lte=end
    ).select_related("vehicle")
    events = [_sample_wire(sample, mission) for sample in samples]
    extras = TelemetryWindowEvent.objects.filter(
        mission_id=mission_id, recorded_at__gte=start, recorded_at__lte=end, payload__isnull=False
    ).values_list("payload", flat=True)
    events.extend(payload for payload in extras if isinstance(payload, dict))
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events


def _sample_wire(sample: TelemetrySample, mission: Mission) -> dict[str, Any]:
    """The normalized event a sample was taken from (``TelemetryEvent.to_wire``'s shape)."""
    data = sample.data or {}
    vehicle = sample.vehicle or mission.vehicle
    wire = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(sample.event_id) if sample.event_id else "",
        "mission_id": mission.pk,
        "vehicle_id": vehicle.external_id if vehicle else None,
        "correlation_id": str(mission.correlation_id),
        "ts": ts_format(sample.recorded_at),
        "position": {
            "lat": sample.lat,
            "lon": sample.lon,
            "speed_kph": sample.speed_kph,
            "heading_deg": sample.heading_deg,
            "accuracy_m": data.get("accuracy_m"),
        },
        "mission_state": data.get("mission_state"),
        "health": data.get("health", {}),
        "connectivity": data.get("connectivity", {}),
        "safety_event": data.get("safety_event"),
        "autonomy_mode": sample.autonomy_mode or None,
    }
    if data.get("vehicle_cert"):
        wire["vehicle_cert"] = data["vehicle_cert"]
    return wire


def snapshot_verify(snapshot: TelemetrySnapshot) -> bool:
    """True when the stored events still hash to the stored digest."""
    return snapshot_digest(list(snapshot.events)) == snapshot.sha256
