"""Gap detection: a mission whose telemetry went silent longer than its threshold raises lost comms once.

The threshold is the ``telemetry_gap_seconds`` of the carrier's contract in
force today, else ``TELEMETRY_GAP_SECONDS_DEFAULT``. A gap is keyed by the
mission's ``last_seen_at`` at detection (``TelemetryGap``), so the same silence
never raises twice; ingest closes the gap when telemetry comes back, and a new
silence after that has a new ``last_seen_at`` and raises again.

A vehicle that buffered its telemetry through the silence uploads it later
(``POST /api/v1/telemetry/backfill``); ``telemetry_gaps_backfill`` then marks
each resumed gap the upload filled (no silence of ``gap_seconds`` left between
``last_seen_at`` and ``resumed_seen_at``) and records
``mission.telemetry_backfilled``, to which the SLA engine (recomputing the
telemetry-integrity SLI over the windows that hold the gap) and the evidence
log subscribe.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from celery._state import _set_task_join_will_block, task_join_will_block  # type: ignore[attr-defined]
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from missions.choices import ExceptionKind
from missions.events import Actor, event_record
from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryGap
from missions.services import mission_exception_report
from missions.telemetry.normalize import ts_format
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
    found = [
        GapCandidate(mission_id=pk, last_seen_at=seen, gap_seconds=int(gap))
        for pk, seen, gap in rows
        if seen is not None and seen <= now - timedelta(seconds=int(gap))
    ]
    # The silence that crossed its threshold first is raised first.
    found.sort(key=lambda c: c.last_seen_at + timedelta(seconds=c.gap_seconds))
    return found


@transaction.atomic
def telemetry_gap_open(*, mission_id: int, last_seen_at: datetime, gap_seconds: int) -> TelemetryGap | None:
    """Record the gap and raise one lost-comms exception; ``None`` if telemetry resumed or it already raised.

    Also ``None``, without waiting, while another transaction holds the mission's row: passes
    overlap when one takes longer than the beat period, and each then raises the silences the
    others are not on (the next pass looks at a skipped mission again).
    """
    mission = Mission.objects.select_for_update(skip_locked=True).filter(pk=mission_id).first()
    if mission is None:
        return None
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
    """Find silent missions and raise lost comms for each new silence; return how many were raised.

    On PostgreSQL, outside a transaction, up to ``TELEMETRY_GAP_WORKERS`` threads raise them,
    each on its own connection: raising one takes a few round trips and a snapshot of the
    window, so many silences at once (a cell tower down) are alarmed together rather than
    one after the other.
    """
    now = now or timezone.now()
    candidates = gap_candidates(now=now)
    workers = min(int(settings.TELEMETRY_GAP_WORKERS), len(candidates))
    if workers <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return _gaps_raise(candidates)
    # Every thread runs in this context (the safety ticker's tasks_inline() holds there too).
    contexts = [contextvars.copy_context() for _ in range(workers)]
    # Celery keeps "a task is running here" in one process-wide flag that an eagerly applied task
    # saves and restores: tasks applied on several threads at once can leave it set, and every
    # later result.get() in the process would then refuse. Put back what it was once all are done.
    join_will_block = task_join_will_block()
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="gap-raise") as pool:
            shares = [pool.submit(ctx.run, _gaps_raise, candidates[i::workers], own_connection=True)
                      for i, ctx in enumerate(contexts)]  # fmt: skip
            return sum(share.result() for share in shares)
    finally:
        _set_task_join_will_block(join_will_block)


def _gaps_raise(candidates: list[GapCandidate], *, own_connection: bool = False) -> int:
    raised = 0
    try:
        for candidate in candidates:
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
    finally:
        if own_connection:
            connection.close()  # this thread's own: the pool's threads end with the pass
    return raised


def gap_detector_loop(*, stop: threading.Event, period: float, check: Callable[[], int] = telemetry_gaps_check) -> None:
    """Run ``check`` every ``period`` seconds until ``stop`` is set (the gap detector thread of the beat process).

    A pass starts a period after the last one started, or at once when that one took longer;
    passes never overlap. A failing pass (the database away) is logged and the next one runs.
    """
    while not stop.is_set():
        started = time.monotonic()
        try:
            check()
        except Exception:
            log.exception("gap detection pass failed")
            connection.close()
        if stop.wait(max(0.0, period - (time.monotonic() - started))):
            return


# --- Backfill: a silence filled afterwards by the events the vehicle buffered ------------------------

BACKFILLED_ACTION = "mission.telemetry_backfilled"


@dataclass(frozen=True)
class GapCoverage:
    """What the stored samples say about a silence now: how many fill it and the longest hole left."""

    samples: int
    longest_silence_seconds: float
    # SHA-256 of the samples inside the silence as JSON lines (``coverage_line``), oldest first.
    samples_sha256: str


def coverage_line(event_id: object, recorded_at: datetime, lat: float, lon: float) -> bytes:
    """One sample as a line of the coverage digest: a JSON object with sorted keys, no spaces, newline-terminated."""
    record = {"event_id": str(event_id), "lat": lat, "lon": lon, "ts": ts_format(recorded_at)}
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"


def gap_coverage(gap: TelemetryGap) -> GapCoverage:
    """The samples strictly inside the silence ``(last_seen_at, resumed_seen_at)`` and the longest hole among them.

    The silence's own ends count as samples (the last event before it and the one that ended it),
    so a gap with nothing inside has its whole length as its longest hole.
    """
    end = gap.resumed_seen_at or gap.last_seen_at
    rows = (
        TelemetrySample.objects.filter(mission_id=gap.mission_id, recorded_at__gt=gap.last_seen_at, recorded_at__lt=end)
        .order_by("recorded_at")
        .values_list("event_id", "recorded_at", "lat", "lon")
    )
    digest = hashlib.sha256()
    previous = gap.last_seen_at
    longest = 0.0
    count = 0
    for event_id, recorded_at, lat, lon in rows.iterator(chunk_size=5000):
        longest = max(longest, (recorded_at - previous).total_seconds())
        previous = recorded_at
        digest.update(coverage_line(event_id, recorded_at, lat, lon))
        count += 1
    longest = max(longest, (end - previous).total_seconds())
    return GapCoverage(samples=count, longest_silence_seconds=longest, samples_sha256=digest.hexdigest())


def telemetry_gaps_backfill(
    *, carrier: Carrier, spans: Mapping[int, tuple[datetime, datetime]], now: datetime | None = None
) -> list[TelemetryGap]:
    """Mark the resumed gaps that uploaded events fall into and now fill; return those marked.

    ``spans`` maps each mission of ``carrier`` to the earliest and latest timestamp of the
    uploaded events that are stored (new or already there). A gap is looked at only when one
    of them falls inside its silence; it is marked when no hole of ``gap_seconds`` is left.
    A gap still open cannot be filled yet: its silence has no end.
    """
    if not spans:
        return []
    candidates = TelemetryGap.objects.filter(
        mission_id__in=list(spans), mission__carrier=carrier, backfilled_at__isnull=True, resumed_seen_at__isnull=False
    ).values_list("pk", "mission_id", "last_seen_at", "resumed_seen_at")
    marked: list[TelemetryGap] = []
    for pk, mission_id, start, end in candidates:
        earliest, latest = spans[mission_id]
        if end is None or latest <= start or earliest >= end:
            continue  # no uploaded event inside this silence
        gap = telemetry_gap_backfill(gap_id=pk, actor=Actor.for_carrier(carrier), now=now)
        if gap is not None:
            marked.append(gap)
    return marked


@transaction.atomic
def telemetry_gap_backfill(*, gap_id: int, actor: Actor, now: datetime | None = None) -> TelemetryGap | None:
    """Mark one resumed gap backfilled if its silence is filled now; None if it is not (or already was)."""
    # Only the gap row is locked: the carrier row is the SLA evaluation's lock.
    locked = TelemetryGap.objects.select_for_update(of=("self",))
    gap = locked.select_related("mission__shipment", "mission__carrier").get(pk=gap_id)
    if gap.backfilled_at is not None or gap.resumed_seen_at is None:
        return None
    coverage = gap_coverage(gap)
    if coverage.longest_silence_seconds >= gap.gap_seconds:
        return None
    gap.backfilled_at = now or timezone.now()
    gap.save(update_fields=["backfilled_at"])
    mission = gap.mission
    event_record(
        actor=actor,
        action=BACKFILLED_ACTION,
        subject_type="mission",
        subject_id=mission.pk,
        before={"gap_state": "resumed"},
        after={"gap_state": "backfilled"},
        data={
            "gap_id": gap.pk,
            "exception_id": gap.exception_id,
            "silence_start": gap.last_seen_at,
            "silence_end": gap.resumed_seen_at,
            "gap_seconds": gap.gap_seconds,
            "samples": coverage.samples,
            "longest_silence_seconds": round(coverage.longest_silence_seconds, 3),
            "samples_sha256": coverage.samples_sha256,
        },
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    log.info("telemetry gap backfilled", extra={"mission_id": mission.pk, "gap_id": gap.pk})
    return gap
