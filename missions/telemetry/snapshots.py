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

from missions.models.telemetry import TelemetrySnapshot, TelemetryWindowEvent


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
    events = list(
        TelemetryWindowEvent.objects.filter(mission_id=mission_id, recorded_at__gte=start, recorded_at__lte=end)
        .order_by("recorded_at", "event_id")
        .values_list("payload", flat=True)
    )
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
    from missions.evidence.services import attest_after_commit

    attest_after_commit(kind="telemetry-snapshot", subject_type="snapshot", subject_id=snapshot.pk)
    return snapshot


def snapshot_verify(snapshot: TelemetrySnapshot) -> bool:
    """True when the stored events still hash to the stored digest."""
    return snapshot_digest(list(snapshot.events)) == snapshot.sha256
