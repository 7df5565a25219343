"""The one path every telemetry event takes, whatever carried it (HTTP, WebSocket, MQTT).

Per batch, in one transaction:

1. validate each event (``normalize.event_validate``) and check that its
   mission belongs to the sending carrier and its vehicle is that mission's
   (one query for all missions of the batch, optionally cached by a stream);
2. write every new event to the full-fidelity window, deduped on its id
   (PostgreSQL: COPY into a temporary table, then ``INSERT ... ON CONFLICT DO
   NOTHING``; SQLite: look-up plus ``bulk_create``);
3. keep at most one long-term sample per vehicle and UTC second (the unique
   ``(vehicle, bucket_s)`` index makes this hold across concurrent batches);
4. move each mission's last seen time and position forward (one statement);
5. send autonomy-mode changes and safety events through the mission services,
   so they land in the ordered event log, and freeze the window into a
   snapshot when a safety event arrives;
6. record a vehicle's new ``software_version`` (``vehicle.software_reported``): only
   when it differs from the version this process last saw for that vehicle (a
   dict look-up per event; one query for vehicles this process has not seen yet),
   so the OTA check (``missions.ota``) runs per change, never per event.

After commit, one coalesced ``fleet.positions`` message per batch goes to the
channel-layer group ``fleet`` (the live map). See docs/decisions/0010-telemetry-ingest.md.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone
from opentelemetry import trace

from missions.choices import MissionStatus
from missions.events import Actor, event_record
from missions.models import Carrier, Mission, MissionException, VehicleSoftware
from missions.models.telemetry import TelemetryGap
from missions.services import mission_autonomy_change, mission_exception_report
from missions.telemetry.broadcast import FLEET_GROUP, fleet_broadcast, position_message
from missions.telemetry.normalize import TelemetryEvent, event_validate
from missions.telemetry.snapshots import telemetry_snapshot_freeze
from missions.telemetry.storage import (
    Accepted,
    MissionInfo,
    array_literal,
    array_number,
    persist,
    pg_rows,
    stored_as_samples,
)
from tms_console import tracing
from tms_console.domain import DomainError
from tms_console.metrics import telemetry_ingested, telemetry_rejected

log = logging.getLogger(__name__)

__all__ = ["FLEET_GROUP", "BatchTooLarge", "IngestResult", "MissionCache", "ingest_events", "position_message"]


class BatchTooLarge(DomainError):
    """More events in one batch than the published limit."""

    code = "batch_too_large"


@dataclass
class IngestResult:
    """What happened to a batch: counts, and the index and reason of every rejected event."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Input indexes of the events stored by this batch (the rest are duplicates or rejected).
    stored_indexes: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}

    def part(self, start: int, stop: int) -> IngestResult:
        """The outcome of the events at input indexes [start, stop), re-indexed from 0.

        For a batch that joined several senders' events (group commit): each sender gets its own answer.
        """
        rejected = [
            {"index": r["index"] - start, "reason": r["reason"]} for r in self.rejected if start <= r["index"] < stop
        ]
        stored = {i - start for i in self.stored_indexes if start <= i < stop}
        return IngestResult(
            accepted=len(stored),
            duplicates=(stop - start) - len(stored) - len(rejected),
            rejected=rejected,
            stored_indexes=stored,
        )


class MissionCache:
    """Mission facts for a long-lived stream (a WebSocket or the MQTT bridge).

    Ownership (carrier, vehicle, correlation id) never changes once a mission
    has its vehicle; status and autonomy mode can, so entries expire after
    ``ttl_seconds`` (``TELEMETRY_MISSION_CACHE_SECONDS``) and are refreshed by the next batch's single query.
    A mission without its vehicle yet (a fallback load whose carrier names the truck after booking) is
    read again by every batch: its first samples are not refused for a stale entry.
    """

    def __init__(self, ttl_seconds: float | None = None) -> None:
        self.ttl_seconds = float(settings.TELEMETRY_MISSION_CACHE_SECONDS) if ttl_seconds is None else ttl_seconds
        self._entries: dict[int, MissionInfo] = {}

    def preload(self, carrier_id: int) -> int:
        """Load every mission of the carrier that can still report, in one query; return how many.

        A stream or web process that starts serving a fleet would otherwise
        fetch its missions one first event at a time.
        """

        live = [MissionStatus.ASSIGNED, MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.UNLOADING,
                MissionStatus.SUSPENDED]  # fmt: skip
        ids = list(Mission.objects.filter(carrier_id=carrier_id, status__in=live).values_list("id", flat=True)[:50_000])
        return len(self.get_many(ids, carrier_id)) if ids else 0

    def peek(self, mission_id: int) -> MissionInfo | None:
        """The cached facts of a mission, however old, without a query (None if not cached)."""
        return self._entries.get(mission_id)

    def get_many(self, ids: Iterable[int], carrier_id: int) -> dict[int, MissionInfo]:
        now = time.monotonic()
        wanted = set(ids)
        # Only the asking carrier's own missions: one cache may serve every carrier of a process (the
        # webhook fast path), and another carrier's mission must be as absent as one that does not exist.
        fresh = {
            i: info
            for i in wanted
            if (info := self._entries.get(i)) is not None
            and info.carrier_id == carrier_id
            and info.vehicle_external_id is not None
            and now - info.fetched_at < self.ttl_seconds
        }
        missing = wanted - fresh.keys()
        if missing:
            for info in missions_load(missing, carrier_id):
                info.fetched_at = now
                self._entries[info.id] = info
                fresh[info.id] = info
        if len(self._entries) > 50_000:  # a stream that saw very many missions: start over
            self._entries = dict(fresh)
        return fresh


# Per process and carrier: the missions that batches over HTTP report on, kept as a stream keeps them.
_SHARED: dict[int, MissionCache] = {}


def carrier_cache(carrier_id: int) -> MissionCache | None:
    """This process's mission cache for a carrier's HTTP batches (None when caching is off).

    A fleet posting batches reports on the same missions every second: with a
    cache, a batch reads from the database only the missions it has not seen
    within ``TELEMETRY_MISSION_CACHE_SECONDS``, as a WebSocket or MQTT stream does.
    """
    if float(settings.TELEMETRY_MISSION_CACHE_SECONDS) <= 0:
        return None
    cache = _SHARED.get(carrier_id)
    if cache is None:
        if len(_SHARED) > 10_000:
            _SHARED.clear()
        cache = _SHARED.setdefault(carrier_id, MissionCache())
    return cache


def carrier_caches_clear() -> None:
    """Forget every carrier's cached missions (a test's database starts over)."""
    _SHARED.clear()


def missions_load(ids: Iterable[int], carrier_id: int) -> list[MissionInfo]:
    """One query: the carrier's missions among ``ids`` (others' missions are simply absent)."""
    if connection.vendor == "postgresql":
        # Written out: building the ORM query cost more than running it, once per webhook.
        found = pg_rows(
            """
            SELECT m.id, m.carrier_id, m.vehicle_id, v.external_id, m.correlation_id, m.status,
                   m.autonomy_mode, m.last_seen_at, m.traceparent
            FROM missions_mission m LEFT JOIN missions_vehicle v ON v.id = m.vehicle_id
            WHERE m.id = ANY(%s::bigint[])
            """,
            [array_literal(str(int(i)) for i in ids)],
        )
        # The carrier is checked here, not in the statement: by primary key alone the plan is the same
        # whatever the table's statistics say (with the carrier in it, stale ones led PostgreSQL through
        # the carrier's whole index).
        return [MissionInfo(*row) for row in found if row[1] == carrier_id]
    rows = Mission.objects.filter(pk__in=list(ids), carrier_id=carrier_id).values_list(
        "id",
        "carrier_id",
        "vehicle_id",
        "vehicle__external_id",
        "correlation_id",
        "status",
        "autonomy_mode",
        "last_seen_at",
        "traceparent",
    )
    return [MissionInfo(*row) for row in rows]


def ingest_events(
    *,
    carrier: Carrier,
    events: list[Any],
    source: str,
    cache: MissionCache | None = None,
    now: datetime | None = None,
    samples_dedupe: bool = False,
    vehicle_cert: str | Sequence[str] = "",
) -> IngestResult:
    """Validate, dedupe, downsample and store a batch from one carrier; never raises on bad events.

    ``samples_dedupe`` also counts as duplicates the events stored as long-term samples,
    past the window's dedupe horizon (``storage.stored_as_samples``): the store-and-forward
    backfill, whose events are old and may be sent again long after the first upload.
    ``vehicle_cert``: the ``sha256:<hex>`` fingerprint of the vehicle SVID the transport verified
    for this batch (``missions.identity.gate``), or one per event (a group commit joins several
    vehicles' requests); stored with each event.
    """
    limit = telemetry_batch_max()
    if len(events) > limit:
        raise BatchTooLarge(f"A batch holds at most {limit} events; this one has {len(events)}.")
    with _cycle_collector_paused():
        result = _ingest(
            carrier=carrier,
            events=events,
            source=source,
            cache=cache,
            now=now or timezone.now(),
            samples_dedupe=samples_dedupe,
            vehicle_cert=vehicle_cert,
        )
    telemetry_rejected(source, len(result.rejected))
    return result


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause the cycle collector for one batch.

    A batch allocates thousands of short-lived, acyclic objects, freed by
    reference counting; with the collector on, those allocations set off
    collections that walked the whole heap several times per batch. Only
    whoever paused it turns it back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _ingest(
    *,
    carrier: Carrier,
    events: list[Any],
    source: str,
    cache: MissionCache | None,
    now: datetime,
    samples_dedupe: bool = False,
    vehicle_cert: str | Sequence[str] = "",
) -> IngestResult:
    result = IngestResult()

    max_future = timedelta(seconds=settings.TELEMETRY_MAX_FUTURE_SECONDS)
    max_age = timedelta(seconds=settings.TELEMETRY_MAX_AGE_SECONDS)
    valid: list[tuple[int, TelemetryEvent]] = []
    for index, raw in enumerate(events):
        outcome = event_validate(raw, now=now, max_future=max_future, max_age=max_age)
        if isinstance(outcome, str):
            result.rejected.append({"index": index, "reason": outcome})
        else:
            if vehicle_cert:
                outcome.vehicle_cert = vehicle_cert if isinstance(vehicle_cert, str) else vehicle_cert[index]
            valid.append((index, outcome))
    if not valid:
        return result

    missions = (cache or MissionCache()).get_many({ev.mission_id for _, ev in valid}, carrier.pk)
    accepted: list[Accepted] = []
    seen_ids: set[uuid.UUID] = set()
    for index, ev in valid:
        info = missions.get(ev.mission_id)
        reason = _ownership_problem(ev, info)
        if reason:
            result.rejected.append({"index": index, "reason": reason})
            continue
        assert info is not None
        if ev.event_id in seen_ids:  # the same event twice in one batch
            result.duplicates += 1
            continue
        seen_ids.add(ev.event_id)
        # Every stored event carries its correlation id: the mission's, when the sender left it out.
        ev.correlation_id = info.correlation_id
        accepted.append(Accepted(index=index, event=ev, mission=info))
    result.rejected.sort(key=lambda r: r["index"])
    if not accepted:
        return result
    _link_mission_traces(accepted)

    _store_isolated(accepted, result, carrier=carrier, source=source, now=now, samples_dedupe=samples_dedupe)
    result.rejected.sort(key=lambda r: r["index"])
    if result.accepted:
        telemetry_ingested(result.accepted)
    log.debug(
        "telemetry batch",
        extra={
            "source": source,
            "carrier": carrier.slug,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": len(result.rejected),
        },
    )
    return result


# What a batch's storage can fail with because of what it holds (a value the database refuses), as
# opposed to the database being unreachable (OperationalError, InterfaceError: those stay a 503).
_DATA_ERRORS: tuple[type[BaseException], ...] = (DataError, IntegrityError, psycopg.DataError, psycopg.IntegrityError)


def _store_isolated(
    accepted: list[Accepted],
    result: IngestResult,
    *,
    carrier: Carrier,
    source: str,
    now: datetime,
    samples_dedupe: bool,
) -> None:
    """Store ``accepted`` in one transaction; if the database refuses it for what it holds, split it.

    The halves are stored apart, down to the one event the database refuses,
    which is reported as rejected with the error's kind: the good events of
    a batch are never lost with a bad one, and nothing is acknowledged that
    was not committed. Only the part that committed is added to ``result``.
    """
    part = IngestResult()
    try:
        with transaction.atomic():
            _store(accepted, part, carrier=carrier, source=source, now=now, samples_dedupe=samples_dedupe)
    except _DATA_ERRORS as exc:
        if len(accepted) == 1:
            log.warning(
                "telemetry event refused by the database",
                extra={"source": source, "carrier": carrier.slug, "event_id": str(accepted[0].event.event_id),
                       "error": type(exc).__name__},
            )  # fmt: skip
            result.rejected.append(
                {"index": accepted[0].index, "reason": f"could not be stored ({type(exc).__name__}); not retried"}
            )
            return
        middle = len(accepted) // 2
        for half in (accepted[:middle], accepted[middle:]):
            _store_isolated(half, result, carrier=carrier, source=source, now=now, samples_dedupe=samples_dedupe)
        return
    result.accepted += part.accepted
    result.duplicates += part.duplicates
    result.stored_indexes |= part.stored_indexes


def _store(
    accepted: list[Accepted],
    result: IngestResult,
    *,
    carrier: Carrier,
    source: str,
    now: datetime,
    samples_dedupe: bool,
) -> None:
    if samples_dedupe:
        kept = stored_as_samples(accepted)
        if kept:
            result.duplicates += len(kept)
            accepted = [a for a in accepted if a.event.event_id not in kept]
    new_ids = persist(accepted, received_at=now) if accepted else set()
    fresh = [a for a in accepted if a.event.event_id in new_ids]
    result.duplicates += len(accepted) - len(fresh)
    result.accepted = len(fresh)
    result.stored_indexes = {a.index for a in fresh}
    if fresh:
        moved = _missions_touch(fresh, now=now)
        _gaps_close(moved, carrier=carrier, now=now)
        _modes_and_safety(fresh, carrier=carrier, source=source)
        _software_reports(fresh, carrier=carrier)
        positions = _positions(fresh, moved)
        if positions:
            transaction.on_commit(lambda: fleet_broadcast(positions))


# A batch's span links to at most this many missions' traces (a fleet-wide batch would list thousands).
MAX_TRACE_LINKS = 16


def _link_mission_traces(accepted: list[Accepted]) -> None:
    """Link the current span (the batch's request or message) to the traces of the missions it reports on.

    Telemetry never joins a mission's trace (that trace would never end); a link
    lets the mission's page list the batches that reported on it. Nothing is done
    per event, and nothing at all when no span is recording.
    """
    span = trace.get_current_span()
    if not span.is_recording():
        return
    linked: set[int] = set()
    for a in accepted:
        info = a.mission
        if info.id in linked or not info.traceparent:
            continue
        link = tracing.link_to(info.traceparent)
        if link is not None:
            span.add_link(link.context, {"tms.mission_id": str(info.id)})
            linked.add(info.id)
            if len(linked) >= MAX_TRACE_LINKS:
                break
    span.set_attribute("tms.telemetry.events", len(accepted))


def telemetry_batch_max() -> int:
    return int(getattr(settings, "API_TELEMETRY_MAX_BATCH", 1000))


def _ownership_problem(ev: TelemetryEvent, info: MissionInfo | None) -> str | None:
    # Another carrier's mission and a mission that does not exist get the same answer: no probing.
    if info is None:
        return f"mission_id: mission {ev.mission_id} is not a mission of this carrier"
    if info.vehicle_external_id is None:
        return f"mission_id: mission {ev.mission_id} has no vehicle assigned yet"
    if ev.vehicle_id != info.vehicle_external_id:
        return f"vehicle_id: {ev.vehicle_id!r} is not the vehicle of mission {ev.mission_id}"
    if ev.correlation_id is not None and ev.correlation_id != info.correlation_id:
        return f"correlation_id: does not match mission {ev.mission_id}"
    return None


def _latest_per_mission(fresh: list[Accepted]) -> dict[int, Accepted]:
    latest: dict[int, Accepted] = {}
    for a in fresh:
        current = latest.get(a.mission.id)
        if current is None or a.event.ts > current.event.ts:
            latest[a.mission.id] = a
    return latest


def _missions_touch(fresh: list[Accepted], *, now: datetime) -> dict[int, Accepted]:
    """Move last seen / position forward for each mission whose newest event is newer; return those.

    ``updated_at`` moves too: it is on our clock (``last_seen_at`` is on the
    vehicle's), so the live map's poll in embedded mode can follow it.
    """
    latest = {
        mid: a
        for mid, a in _latest_per_mission(fresh).items()
        if a.mission.last_seen_at is None or a.event.ts > a.mission.last_seen_at
    }
    if not latest:
        return latest
    ordered = sorted(latest.values(), key=lambda a: a.mission.id)  # a fixed lock order between batches
    if connection.vendor == "postgresql":
        # One statement for every mission of the batch; the WHERE keeps a
        # concurrent batch with newer data from being overwritten.
        pg_rows(
            """
            UPDATE missions_mission AS m
            SET last_seen_at = v.ts, last_lat = v.lat, last_lon = v.lon, last_speed_kph = v.speed,
                updated_at = %s
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::float8[], %s::float8[], %s::float8[])
                 AS v(id, ts, lat, lon, speed)
            WHERE m.id = v.id AND (m.last_seen_at IS NULL OR m.last_seen_at < v.ts)
            """,
            [
                now,
                # Array literals as text: the driver's per-element adaptation cost more than the UPDATE.
                array_literal(str(a.mission.id) for a in ordered),
                array_literal(a.event.ts_text for a in ordered),
                array_literal(repr(a.event.lat) for a in ordered),
                array_literal(repr(a.event.lon) for a in ordered),
                array_literal(array_number(a.event.speed_kph) for a in ordered),
            ],
            fetch=False,
        )
    else:
        from django.db.models import Q

        for a in ordered:
            Mission.objects.filter(
                Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=a.event.ts), pk=a.mission.id
            ).update(
                last_seen_at=a.event.ts,
                last_lat=a.event.lat,
                last_lon=a.event.lon,
                last_speed_kph=a.event.speed_kph,
                updated_at=now,
            )
    for a in ordered:
        a.mission.last_seen_at = a.event.ts  # keep a stream's cache in step
    return latest


def _gaps_close(moved: dict[int, Accepted], *, carrier: Carrier, now: datetime) -> None:
    """Telemetry is back for missions with an open gap: close it and say so in the event log."""
    if not moved:
        return
    gap_ids = _open_gap_ids(list(moved))
    if not gap_ids:  # the usual case: one indexed look-up, no ORM query built
        return
    open_gaps = list(TelemetryGap.objects.filter(pk__in=gap_ids).select_related("mission__shipment"))
    for gap in open_gaps:
        gap.resumed_at = now
        # On the vehicle's clock: the silence ran from last_seen_at to this event (gaps.telemetry_gaps_backfill).
        gap.resumed_seen_at = moved[gap.mission_id].event.ts
        gap.save(update_fields=["resumed_at", "resumed_seen_at"])
        mission = gap.mission
        event_record(
            actor=Actor.for_carrier(carrier),
            action="mission.telemetry_resumed",
            subject_type="mission",
            subject_id=mission.pk,
            before={"last_seen_at": gap.last_seen_at},
            after={"last_seen_at": moved[mission.pk].event.ts},
            data={"silence_seconds": round((moved[mission.pk].event.ts - gap.last_seen_at).total_seconds(), 3)},
            correlation_id=mission.correlation_id,
            shipment=mission.shipment,
            mission=mission,
            carrier=carrier,
        )


def _open_gap_ids(mission_ids: list[int]) -> list[int]:
    """Ids of open gaps among the missions: usually none, so this is the only query on the hot path."""
    if connection.vendor == "postgresql":
        # One array parameter instead of an IN list of a thousand: cheap to plan, served by the partial index.
        rows = pg_rows(
            "SELECT id FROM missions_telemetrygap WHERE resumed_at IS NULL AND mission_id = ANY(%s::bigint[])",
            [array_literal(map(str, mission_ids))],
        )
        return [row[0] for row in rows]
    return list(
        TelemetryGap.objects.filter(mission_id__in=mission_ids, resumed_at__isnull=True).values_list("id", flat=True)
    )


def _modes_and_safety(fresh: list[Accepted], *, carrier: Carrier, source: str) -> None:
    actor = Actor.for_carrier(carrier)
    by_mission: dict[int, list[Accepted]] = {}
    for a in fresh:
        if a.event.autonomy_mode or a.event.safety_event:
            by_mission.setdefault(a.mission.id, []).append(a)
    for items in by_mission.values():
        items.sort(key=lambda a: a.event.ts)
        for a in items:
            ev, info = a.event, a.mission
            if ev.autonomy_mode and ev.autonomy_mode != info.autonomy_mode and _is_current(a):
                try:
                    mission_autonomy_change(
                        mission_id=info.id, mode=ev.autonomy_mode, actor=actor, reason=f"telemetry {ev.event_id}"
                    )
                    info.autonomy_mode = ev.autonomy_mode
                except DomainError as exc:  # e.g. the mission already ended: the sample still records it
                    log.info("autonomy change from telemetry refused", extra={"mission_id": info.id, "error": str(exc)})
            if ev.safety_event:
                _safety_event_report(a, actor=actor, source=source)


def _is_current(a: Accepted) -> bool:
    # A late, buffered event must not flip the mode back: only events at or
    # after the newest one this batch started from count.
    return a.mission.last_seen_at is None or a.event.ts >= a.mission.last_seen_at


def _safety_event_report(a: Accepted, *, actor: Actor, source: str) -> None:
    ev = a.event
    # Beyond the dedupe horizon a resent safety event would otherwise raise twice.
    if MissionException.objects.filter(mission_id=a.mission.id, data__event_id=str(ev.event_id)).exists():
        return
    exc = mission_exception_report(
        mission_id=a.mission.id,
        kind=ev.safety_event or "",
        actor=actor,
        detail=f"{ev.safety_event} reported by vehicle {ev.vehicle_id} in telemetry",
        data={
            "event_id": str(ev.event_id),
            "vehicle_id": ev.vehicle_id,
            "lat": ev.lat,
            "lon": ev.lon,
            "speed_kph": ev.speed_kph,
            "autonomy_mode": ev.autonomy_mode,
            "source": source,
        },
        occurred_at=ev.ts,
    )
    telemetry_snapshot_freeze(
        mission_id=a.mission.id,
        reason=f"safety_event:{ev.safety_event}",
        at=ev.ts,
        exception_id=exc.pk,
        trigger_event_id=ev.event_id,
    )


# The software version each vehicle last reported, as this process knows it (vehicle pk -> version).
_SOFTWARE_SEEN: dict[int, str] = {}
SOFTWARE_SEEN_MAX = 100_000


def _software_reports(fresh: list[Accepted], *, carrier: Carrier) -> None:
    """Record each vehicle's newly reported software version; nothing at all when it did not change."""
    latest: dict[int, Accepted] = {}
    for a in fresh:
        if a.event.software_version is None or a.mission.vehicle_pk is None:
            continue
        current = latest.get(a.mission.vehicle_pk)
        if current is None or a.event.ts > current.event.ts:
            latest[a.mission.vehicle_pk] = a
    if not latest:
        return
    changed = {vid: a for vid, a in latest.items() if _SOFTWARE_SEEN.get(vid) != a.event.software_version}
    if not changed:
        return
    unseen = [vid for vid in changed if vid not in _SOFTWARE_SEEN]
    if unseen:  # a process that just started: the stored versions, in one query
        if len(_SOFTWARE_SEEN) > SOFTWARE_SEEN_MAX:
            _SOFTWARE_SEEN.clear()
        _SOFTWARE_SEEN.update(
            VehicleSoftware.objects.filter(vehicle_id__in=unseen).values_list("vehicle_id", "version")
        )
    actor = Actor.for_carrier(carrier)
    for vehicle_id, a in sorted(changed.items()):
        ev = a.event
        # A late, buffered event does not report the vehicle's current software.
        if _SOFTWARE_SEEN.get(vehicle_id) == ev.software_version or not _is_current(a):
            continue
        event_record(
            actor=actor,
            action="vehicle.software_reported",
            subject_type="vehicle",
            subject_id=vehicle_id,
            before={"version": _SOFTWARE_SEEN.get(vehicle_id)},
            after={"version": ev.software_version},
            data={
                "vehicle_id": ev.vehicle_id,
                "version": ev.software_version,
                "event_id": str(ev.event_id),
                "ts": ev.ts_text,
            },
            correlation_id=a.mission.correlation_id,
            carrier=carrier,
        )
        # Remembered once recorded for good: a batch that rolls back must report the version again.
        transaction.on_commit(partial(_SOFTWARE_SEEN.__setitem__, vehicle_id, ev.software_version or ""))


def _positions(fresh: list[Accepted], moved: dict[int, Accepted]) -> list[dict[str, Any]]:
    return [position_message(a.event, status=a.mission.status, mode=a.mission.autonomy_mode) for a in moved.values()]
