"""Gap detection: a mission whose telemetry went silent longer than its threshold raises lost comms once.

The threshold is the ``telemetry_gap_seconds`` of the carrier's contract in
force today, else ``TELEMETRY_GAP_SECONDS_DEFAULT``. A gap is keyed by the
mission's ``last_seen_at`` at detection (``TelemetryGap``), so the same silence
never raises twice; ingest closes the gap when telemetry comes back, and a new
silence after that has a new ``last_seen_at`` and raises again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from missions.choices import ExceptionKind
from missions.events import Actor
from missions.models import Mission
from missions.models.telemetry import TelemetryGap
from missions.services import mission_exception_report
from missions.telemetry.snapshots import telemetry_snapshot_freeze
from missions.terms import gap_threshold
from missions.transitions import MISSION_ACTIVE

log = logging.getLogger(__name__)

# The smallest threshold a contract may set (Contract.telemetry_gap_seconds validator).
CONTRACT_GAP_SECONDS_MIN = 5


@dataclass(frozen=True)
class GapCandidate:
    mission_id: int
    last_seen_at: datetime
    gap_seconds: int


def gap_candidates(*, now: datetime) -> list[GapCandidate]:
    """One query: active missions silent past their threshold whose silence has not raised yet."""
    raised = TelemetryGap.objects.filter(mission_id=OuterRef("pk"), last_seen_at=OuterRef("last_seen_at"))
    floor = min(CONTRACT_GAP_SECONDS_MIN, settings.TELEMETRY_GAP_SECONDS_DEFAULT)
    rows = (
        Mission.objects.filter(status__in=MISSION_ACTIVE, last_seen_at__lt=now - timedelta(seconds=floor))
        .annotate(gap_s=gap_threshold(today=now.date()))
        .filter(~Exists(raised))
        .values_list("pk", "last_seen_at", "gap_s")
    )
    # The per-mission threshold comparison is done here rather than in SQL:
    # interval arithmetic differs between SQLite and PostgreSQL, and the
    # floor above already keeps healthy (1 Hz) missions out of the result.
    return [
        GapCandidate(mission_id=pk, last_seen_at=seen, gap_seconds=int(gap))
        for pk, seen, gap in rows
        if seen is not None and seen <= now - timedelta(seconds=int(gap))
    ]


@transaction.atomic
def telemetry_gap_open(*, mission_id: int, last_seen_at: datetime, gap_seconds: int) -> TelemetryGap | None:
    """Record the gap and raise one lost-comms exception; ``None`` if telemetry resumed or it already raised."""
    mission = Mission.objects.select_for_update().get(pk=mission_id)
    # Re-checked under the row lock: a batch may have landed since the scan.
    if mission.last_seen_at != last_seen_at or mission.status not in MISSION_ACTIVE:
        return None
    now = timezone.now()
    try:
        with transaction.atomic():
            gap = TelemetryGap.objects.create(
                mission=mission, last_seen_at=last_seen_at, gap_seconds=gap_seconds, detected_at=now
            )
    except IntegrityError:  # another beat run got there first
        return None
    silence = int((now - last_seen_at).total_seconds())
    exc = mission_exception_report(
        mission_id=mission.pk,
        kind=ExceptionKind.LOST_COMMS,
        actor=Actor.system("telemetry-gap-detector"),
        detail=f"No telemetry for {silence} s (threshold {gap_seconds} s).",
        data={
            "last_seen_at": last_seen_at.isoformat(),
            "gap_seconds": gap_seconds,
            "silence_seconds": silence,
            "last_lat": mission.last_lat,
            "last_lon": mission.last_lon,
        },
        occurred_at=now,
    )
    gap.exception = exc
    gap.save(update_fields=["exception"])
    telemetry_snapshot_freeze(mission_id=mission.pk, reason="lost_comms", at=last_seen_at, exception_id=exc.pk)
    return gap


def telemetry_gaps_check(*, now: datetime | None = None) -> int:
    """Find silent missions and raise lost comms for each new silence; return how many were raised."""
    now = now or timezone.now()
    raised = 0
    for candidate in gap_candidates(now=now):
        try:
            gap = telemetry_gap_open(
                mission_id=candidate.mission_id,
                last_seen_at=candidate.last_seen_at,
                gap_seconds=candidate.gap_seconds,
            )
        except Exception:  # one mission's failure must not hide the others' gaps
            log.exception("gap handling failed", extra={"mission_id": candidate.mission_id})
            continue
        if gap is not None:
            raised += 1
            log.warning(
                "telemetry gap", extra={"mission_id": candidate.mission_id, "gap_seconds": candidate.gap_seconds}
            )
    return raised
