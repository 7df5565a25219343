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
   snapshot when a safety event arrives.

After commit, one coalesced ``fleet.positions`` message per batch goes to the
channel-layer group ``fleet`` (the live map). See docs/decisions/0010-telemetry-ingest.md.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from missions.events import Actor, event_record
from missions.models import Carrier, Mission, MissionException, TelemetrySample
from missions.models.telemetry import TelemetryGap, TelemetryWindowEvent
from missions.services import mission_autonomy_change, mission_exception_report
from missions.telemetry.normalize import TelemetryEvent, event_validate
from missions.telemetry.snapshots import telemetry_snapshot_freeze
from tms_console.domain import DomainError

log = logging.getLogger(__name__)

FLEET_GROUP = "fleet"


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


@dataclass
class MissionInfo:
    """What ingest needs to know about a mission, cheap to cache for a few seconds."""

    id: int
    carrier_id: int
    vehicle_pk: int | None
    vehicle_external_id: str | None
    correlation_id: uuid.UUID
    status: str
    autonomy_mode: str
    last_seen_at: datetime | None
    fetched_at: float = 0.0


class MissionCache:
    """Mission facts for a long-lived stream (a WebSocket or the MQTT bridge).

    Ownership (carrier, vehicle, correlation id) never changes once a mission
    has its vehicle; status and autonomy mode can, so entries expire after
    ``ttl_seconds`` and are refreshed by the next batch's single query.
    """

    def __init__(self, ttl_seconds: float = 10.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[int, MissionInfo] = {}

    def preload(self, carrier_id: int) -> int:
        """Load every mission of the carrier that can still report, in one query; return how many.

        A stream or web process that starts serving a fleet would otherwise
        fetch its missions one first event at a time.
        """
        from missions.choices import MissionStatus

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
        fresh = {
            i: info
            for i in wanted
            if (info := self._entries.get(i)) is not None and now - info.fetched_at < self.ttl_seconds
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


def missions_load(ids: Iterable[int], carrier_id: int) -> list[MissionInfo]:
    """One query: the carrier's missions among ``ids`` (others' missions are simply absent)."""
    if connection.vendor == "postgresql":
        # Written out: building the ORM query cost more than running it, once per webhook.
        found = _pg_rows(
            """
            SELECT m.id, m.carrier_id, m.vehicle_id, v.external_id, m.correlation_id, m.status,
                   m.autonomy_mode, m.last_seen_at
            FROM missions_mission m LEFT JOIN missions_vehicle v ON v.id = m.vehicle_id
            WHERE m.id = ANY(%s::bigint[]) AND m.carrier_id = %s
            """,
            [_array_literal(str(int(i)) for i in ids), carrier_id],
        )
        return [MissionInfo(*row) for row in found]
    rows = Mission.objects.filter(pk__in=list(ids), carrier_id=carrier_id).values_list(
        "id",
        "carrier_id",
        "vehicle_id",
        "vehicle__external_id",
        "correlation_id",
        "status",
        "autonomy_mode",
        "last_seen_at",
    )
    return [MissionInfo(*row) for row in rows]


@dataclass(slots=True)
class _Accepted:
    index: int
    event: TelemetryEvent
    mission: MissionInfo
    keep_sample: bool = False
    bucket_s: int = 0


def ingest_events(
    *,
    carrier: Carrier,
    events: list[Any],
    source: str,
    cache: MissionCache | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Validate, dedupe, downsample and store a batch from one carrier; never raises on bad events."""
    limit = telemetry_batch_max()
    if len(events) > limit:
        raise BatchTooLarge(f"A batch holds at most {limit} events; this one has {len(events)}.")
    now = now or timezone.now()
    result = IngestResult()

    max_future = timedelta(seconds=settings.TELEMETRY_MAX_FUTURE_SECONDS)
    max_age = timedelta(seconds=settings.TELEMETRY_MAX_AGE_SECONDS)
    valid: list[tuple[int, TelemetryEvent]] = []
    for index, raw in enumerate(events):
        outcome = event_validate(raw, now=now, max_future=max_future, max_age=max_age)
        if isinstance(outcome, str):
            result.rejected.append({"index": index, "reason": outcome})
        else:
            valid.append((index, outcome))
    if not valid:
        return result

    missions = (cache or MissionCache()).get_many({ev.mission_id for _, ev in valid}, carrier.pk)
    accepted: list[_Accepted] = []
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
        accepted.append(_Accepted(index=index, event=ev, mission=info))
    result.rejected.sort(key=lambda r: r["index"])
    if not accepted:
        return result

    with transaction.atomic():
        new_ids = _persist(accepted, received_at=now)
        fresh = [a for a in accepted if a.event.event_id in new_ids]
        result.duplicates += len(accepted) - len(fresh)
        result.accepted = len(fresh)
        result.stored_indexes = {a.index for a in fresh}
        if fresh:
            moved = _missions_touch(fresh, now=now)
            _gaps_close(moved, carrier=carrier, now=now)
            _modes_and_safety(fresh, carrier=carrier, source=source)
            positions = _positions(fresh, moved)
            if positions:
                transaction.on_commit(lambda: fleet_broadcast(positions))
    if result.accepted:
        from sla.metrics import telemetry_ingested

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


# --- Persistence ------------------------------------------------------------------


def _pg_rows(sql: str, params: list[Any], *, fetch: bool = True) -> list[tuple[Any, ...]]:
    """Run one of ingest's fixed statements as a server-side prepared statement.

    Django binds parameters on the client, so PostgreSQL would plan these
    statements again on every call; planning the window/sample merge cost more
    than running it for a single event. psycopg prepares a statement run with
    ``prepare=True`` once per connection. Same connection and transaction as the ORM.
    """
    import psycopg

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)  # type: ignore[arg-type]
        return cursor.fetchall() if fetch else []


def _mark_samples(accepted: list[_Accepted]) -> None:
    """Within the batch, keep the earliest event of each vehicle-second; the index handles other batches."""
    first: dict[tuple[int, int], _Accepted] = {}
    for a in accepted:
        a.bucket_s = int(a.event.ts.timestamp() // 1)
        key = (a.mission.vehicle_pk or 0, a.bucket_s)
        kept = first.get(key)
        if kept is None or a.event.ts < kept.event.ts:
            first[key] = a
    for a in first.values():
        a.keep_sample = True


def _sample_data(ev: TelemetryEvent) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if ev.health:
        data["health"] = ev.health
    if ev.connectivity:
        data["connectivity"] = ev.connectivity
    if ev.mission_state:
        data["mission_state"] = ev.mission_state
    if ev.safety_event:
        data["safety_event"] = ev.safety_event
    if ev.accuracy_m is not None:
        data["accuracy_m"] = ev.accuracy_m
    return data


def _persist(accepted: list[_Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    """Write window rows and samples; return the ids of events that were not stored before.

    An event kept as its vehicle's sample for that second is stored once, in
    the sample row (which holds every field of the normalized event); its
    window row is only the dedupe record. The rest of that second (a vehicle
    reporting faster than 1 Hz) keeps its full payload in the window.
    """
    _mark_samples(accepted)
    if connection.vendor == "postgresql":
        if len(accepted) < COPY_MIN_EVENTS:
            return _persist_postgres_arrays(accepted, received_at=received_at)
        return _persist_postgres(accepted, received_at=received_at)
    return _persist_generic(accepted, received_at=received_at)


# From this many events a batch goes through COPY (temporary table, then one merge);
# below it, one statement with the rows as array parameters saves three round trips.
COPY_MIN_EVENTS = 32

_TEMP_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS telemetry_incoming (
    event_id uuid, mission_id bigint, vehicle_id bigint, recorded_at timestamptz, payload text,
    keep_sample boolean, bucket_s bigint, lat double precision, lon double precision,
    speed_kph double precision, heading_deg double precision, autonomy_mode text, data text
) ON COMMIT DELETE ROWS
"""

# The JSON columns arrive as text and are parsed only where they are stored: a
# kept sample's ``data``, a window row's ``payload`` only when it is not a sample.
_MERGE_BODY = """
ins AS (
    INSERT INTO missions_telemetrywindowevent (event_id, mission_id, recorded_at, received_at, payload)
    SELECT event_id, mission_id, recorded_at, %s, CASE WHEN keep_sample THEN NULL ELSE payload::jsonb END
    FROM {source}
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), samples AS (
    INSERT INTO missions_telemetrysample
        (mission_id, vehicle_id, recorded_at, lat, lon, speed_kph, heading_deg, autonomy_mode, data, event_id, bucket_s)
    SELECT t.mission_id, t.vehicle_id, t.recorded_at, t.lat, t.lon, t.speed_kph, t.heading_deg, t.autonomy_mode,
           t.data::jsonb, t.event_id, t.bucket_s
    FROM {source} t JOIN ins USING (event_id)
    WHERE t.keep_sample
    ON CONFLICT (vehicle_id, bucket_s) DO NOTHING  -- the second already has its sample
    RETURNING event_id
)
SELECT ins.event_id, false, t.keep_sample FROM ins JOIN {source} t USING (event_id)
UNION ALL SELECT event_id, true, true FROM samples
"""

_MERGE = "WITH " + _MERGE_BODY.format(source="telemetry_incoming")

# A kept sample that lost its second to another batch (same vehicle, same second,
# committed first) is not in the samples after all: its window row takes the payload.
_WINDOW_PAYLOAD = """
UPDATE missions_telemetrywindowevent w SET payload = v.payload
FROM unnest(%s::uuid[], %s::jsonb[]) AS v(event_id, payload)
WHERE w.event_id = v.event_id
"""


# psycopg connections that already have the temporary table (it lives as long as the session).
_temp_table_ready: weakref.WeakSet[Any] = weakref.WeakSet()


def _copy_escape(json_text: str) -> str:
    # COPY text format: backslash is the escape character. JSON text holds no
    # raw tab, newline or control character (the encoder escapes them inside
    # strings), so doubling backslashes is the whole escaping.
    return json_text.replace("\\", "\\\\") if "\\" in json_text else json_text


def _copy_number(value: float | None) -> str:
    return "\\N" if value is None else repr(value)


def _copy_lines(accepted: list[_Accepted]) -> str:
    """The batch as COPY text rows: several times faster than letting the driver adapt 13 values per row.

    One JSON text per row: the sample's ``data`` for a kept sample, the full payload otherwise.
    """
    dumps = orjson.dumps
    number = _copy_number
    escape = _copy_escape
    lines = []
    for a in accepted:
        ev = a.event
        if a.keep_sample:
            json_columns = f"\\N\tt\t{a.bucket_s}"
            data = escape(dumps(_sample_data(ev)).decode())
        else:
            json_columns = f"{escape(dumps(ev.to_wire()).decode())}\tf\t{a.bucket_s}"
            data = "\\N"
        lines.append(
            f"{ev.event_id}\t{ev.mission_id}\t{a.mission.vehicle_pk}\t{ev.ts_text}\t{json_columns}\t"
            f"{ev.lat!r}\t{ev.lon!r}\t{number(ev.speed_kph)}\t{number(ev.heading_deg)}\t"
            f"{ev.autonomy_mode or ''}\t{data}\n"
        )
    return "".join(lines)


def _persist_postgres(accepted: list[_Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    text = _copy_lines(accepted)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor: COPY is not part of the DB-API
        pg_connection = raw.connection
        if pg_connection not in _temp_table_ready:
            cursor.execute(_TEMP_TABLE)
            # Only a committed CREATE survives: a rolled-back one must be repeated next time.
            transaction.on_commit(lambda: _temp_table_ready.add(pg_connection))
        with raw.copy(
            "COPY telemetry_incoming (event_id, mission_id, vehicle_id, recorded_at, payload, keep_sample, bucket_s,"
            " lat, lon, speed_kph, heading_deg, autonomy_mode, data) FROM STDIN"
        ) as copy:
            copy.write(text)
        cursor.execute(_MERGE, [received_at])
        new_ids, lost = _merge_outcome(accepted, cursor.fetchall())
        if lost:
            _window_payloads(lost)
        # ON COMMIT DELETE ROWS empties it at commit; an outer transaction may run several batches.
        cursor.execute("DELETE FROM telemetry_incoming")
    return new_ids


# Both merges are built once from constants (no input reaches the text).
_MERGE_ARRAYS = """
WITH arrays AS (
    SELECT * FROM unnest(
        %s::uuid[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::text[], %s::bool[], %s::bigint[],
        %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::text[], %s::text[]
    ) AS t(event_id, mission_id, vehicle_id, recorded_at, payload, keep_sample, bucket_s,
           lat, lon, speed_kph, heading_deg, autonomy_mode, data)
),""" + _MERGE_BODY.format(source="arrays")  # noqa: S608


def _merge_outcome(
    accepted: list[_Accepted], rows: list[tuple[Any, ...]]
) -> tuple[set[uuid.UUID], list[TelemetryEvent]]:
    """From the merge's rows: the ids stored now, and the events meant as samples that are not.

    Rows are (event_id, is_sample_row, was_meant_as_sample). A new event meant
    as its second's sample whose second already had one (from an earlier or a
    concurrent batch) has a window row without payload: the caller fills it in.
    """
    new_ids: set[uuid.UUID] = set()
    meant: set[uuid.UUID] = set()
    sampled: set[uuid.UUID] = set()
    for event_id, is_sample_row, was_meant in rows:
        if is_sample_row:
            sampled.add(event_id)
        else:
            new_ids.add(event_id)
            if was_meant:
                meant.add(event_id)
    missing = meant - sampled
    return new_ids, [a.event for a in accepted if a.event.event_id in missing] if missing else []


def _array_text(value: str | None) -> str:
    # An element of a text[] literal: quoted, with backslash and double quote escaped.
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _persist_postgres_arrays(accepted: list[_Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    """The merge of ``_persist_postgres`` in one statement, the rows passed as array literals."""
    dumps = orjson.dumps
    payloads, datas = [], []
    for a in accepted:
        if a.keep_sample:
            payloads.append("NULL")
            datas.append(_array_text(dumps(_sample_data(a.event)).decode()))
        else:
            payloads.append(_array_text(dumps(a.event.to_wire()).decode()))
            datas.append("NULL")
    evs = [a.event for a in accepted]
    params = [
        _array_literal(str(ev.event_id) for ev in evs),
        _array_literal(str(ev.mission_id) for ev in evs),
        _array_literal(str(a.mission.vehicle_pk) for a in accepted),
        _array_literal(ev.ts_text for ev in evs),
        _array_literal(payloads),
        _array_literal("t" if a.keep_sample else "f" for a in accepted),
        _array_literal(str(a.bucket_s) for a in accepted),
        _array_literal(repr(ev.lat) for ev in evs),
        _array_literal(repr(ev.lon) for ev in evs),
        _array_literal(_array_number(ev.speed_kph) for ev in evs),
        _array_literal(_array_number(ev.heading_deg) for ev in evs),
        _array_literal(_array_text(ev.autonomy_mode or "") for ev in evs),
        _array_literal(datas),
        received_at,
    ]
    new_ids, lost = _merge_outcome(accepted, _pg_rows(_MERGE_ARRAYS, params))
    if lost:
        _window_payloads(lost)
    return new_ids


def _window_payloads(events: list[TelemetryEvent]) -> None:
    _pg_rows(
        _WINDOW_PAYLOAD,
        [[ev.event_id for ev in events], [orjson.dumps(ev.to_wire()).decode() for ev in events]],
        fetch=False,
    )


def _persist_generic(accepted: list[_Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    # SQLite takes the write lock when the transaction starts (IMMEDIATE), so the
    # look-ups below cannot race another writer between SELECT and INSERT.
    ids = [a.event.event_id for a in accepted]
    existing = set(TelemetryWindowEvent.objects.filter(event_id__in=ids).values_list("event_id", flat=True))
    fresh = [a for a in accepted if a.event.event_id not in existing]
    candidates = [a for a in fresh if a.keep_sample]
    taken = _seconds_taken(candidates)
    sampled = [a for a in candidates if (a.mission.vehicle_pk, a.bucket_s) not in taken]
    sampled_ids = {a.event.event_id for a in sampled}
    TelemetryWindowEvent.objects.bulk_create(
        [
            TelemetryWindowEvent(
                event_id=a.event.event_id,
                mission_id=a.mission.id,
                recorded_at=a.event.ts,
                received_at=received_at,
                payload=None if a.event.event_id in sampled_ids else a.event.to_wire(),
            )
            for a in fresh
        ],
        batch_size=500,
    )
    TelemetrySample.objects.bulk_create(
        [
            TelemetrySample(
                mission_id=a.mission.id,
                vehicle_id=a.mission.vehicle_pk,
                recorded_at=a.event.ts,
                lat=a.event.lat,
                lon=a.event.lon,
                speed_kph=a.event.speed_kph,
                heading_deg=a.event.heading_deg,
                autonomy_mode=a.event.autonomy_mode or "",
                data=_sample_data(a.event),
                event_id=a.event.event_id,
                bucket_s=a.bucket_s,
            )
            for a in sampled
        ],
        batch_size=500,
    )
    return {a.event.event_id for a in fresh}


def _seconds_taken(candidates: list[_Accepted]) -> set[tuple[int | None, int | None]]:
    """(vehicle, second) pairs among ``candidates`` that already have a sample."""
    if not candidates:
        return set()
    from django.db.models import Q

    wanted = Q()
    for vehicle_pk, seconds in _group_seconds(candidates).items():
        wanted |= Q(vehicle_id=vehicle_pk, bucket_s__in=seconds)
    return {
        (vehicle, second)
        for vehicle, second in TelemetrySample.objects.filter(wanted).values_list("vehicle_id", "bucket_s")
    }


def _group_seconds(candidates: list[_Accepted]) -> dict[int | None, list[int]]:
    grouped: dict[int | None, list[int]] = {}
    for a in candidates:
        grouped.setdefault(a.mission.vehicle_pk, []).append(a.bucket_s)
    return grouped


def _array_literal(items: Iterable[str]) -> str:
    # Elements are digits, ISO timestamps, float reprs or NULL: nothing that needs quoting.
    return "{" + ",".join(items) + "}"


def _array_number(value: float | None) -> str:
    return "NULL" if value is None else repr(value)


def _latest_per_mission(fresh: list[_Accepted]) -> dict[int, _Accepted]:
    latest: dict[int, _Accepted] = {}
    for a in fresh:
        current = latest.get(a.mission.id)
        if current is None or a.event.ts > current.event.ts:
            latest[a.mission.id] = a
    return latest


def _missions_touch(fresh: list[_Accepted], *, now: datetime) -> dict[int, _Accepted]:
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
        _pg_rows(
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
                _array_literal(str(a.mission.id) for a in ordered),
                _array_literal(a.event.ts_text for a in ordered),
                _array_literal(repr(a.event.lat) for a in ordered),
                _array_literal(repr(a.event.lon) for a in ordered),
                _array_literal(_array_number(a.event.speed_kph) for a in ordered),
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


def _gaps_close(moved: dict[int, _Accepted], *, carrier: Carrier, now: datetime) -> None:
    """Telemetry is back for missions with an open gap: close it and say so in the event log."""
    if not moved:
        return
    gap_ids = _open_gap_ids(list(moved))
    if not gap_ids:  # the usual case: one indexed look-up, no ORM query built
        return
    open_gaps = list(TelemetryGap.objects.filter(pk__in=gap_ids).select_related("mission__shipment"))
    for gap in open_gaps:
        gap.resumed_at = now
        gap.save(update_fields=["resumed_at"])
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
        rows = _pg_rows(
            "SELECT id FROM missions_telemetrygap WHERE resumed_at IS NULL AND mission_id = ANY(%s::bigint[])",
            [_array_literal(map(str, mission_ids))],
        )
        return [row[0] for row in rows]
    return list(
        TelemetryGap.objects.filter(mission_id__in=mission_ids, resumed_at__isnull=True).values_list("id", flat=True)
    )


def _modes_and_safety(fresh: list[_Accepted], *, carrier: Carrier, source: str) -> None:
    actor = Actor.for_carrier(carrier)
    by_mission: dict[int, list[_Accepted]] = {}
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


def _is_current(a: _Accepted) -> bool:
    # A late, buffered event must not flip the mode back: only events at or
    # after the newest one this batch started from count.
    return a.mission.last_seen_at is None or a.event.ts >= a.mission.last_seen_at


def _safety_event_report(a: _Accepted, *, actor: Actor, source: str) -> None:
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


# --- Live map broadcast --------------------------------------------------------------


def _positions(fresh: list[_Accepted], moved: dict[int, _Accepted]) -> list[dict[str, Any]]:
    return [position_message(a.event, status=a.mission.status, mode=a.mission.autonomy_mode) for a in moved.values()]


def position_message(ev: TelemetryEvent, *, status: str, mode: str) -> dict[str, Any]:
    return {
        "mission_id": ev.mission_id,
        "vehicle_id": ev.vehicle_id,
        "lat": round(ev.lat, 6),
        "lon": round(ev.lon, 6),
        "speed_kph": None if ev.speed_kph is None else round(ev.speed_kph, 1),
        "heading_deg": ev.heading_deg,
        "autonomy_mode": ev.autonomy_mode or mode,
        "status": status,
        "safety_event": ev.safety_event,
        "last_seen_at": ev.ts_text,
    }


def fleet_broadcast(positions: list[dict[str, Any]]) -> None:
    """One message per batch to the live map group; never fails the caller.

    With a shared (Redis) channel layer the send is handed to this process's
    broadcaster thread, so a request or stream does not wait for it and does
    not build an event loop per call. The in-process layer's queues belong to
    the server's own loop, so there the send goes through ``async_to_sync``.
    """
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            async_to_sync(layer.group_send)(FLEET_GROUP, {"type": "fleet.positions", "positions": positions})
        except Exception:  # a live update must never break the write that caused it
            log.exception("fleet broadcast failed")
        return
    _broadcaster(layer).submit(positions)


class FleetBroadcaster:
    """A daemon thread with its own event loop that sends ``fleet.positions`` messages in order.

    Positions queued while a send is in flight go out together in the next
    message (newest position per mission wins), so a slow channel layer delays
    the map a little instead of piling up messages.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-broadcast", daemon=True)
        self._thread.start()

    def submit(self, positions: list[dict[str, Any]]) -> None:
        with self._lock:
            for position in positions:
                self._pending[position["mission_id"]] = position
        self._wake.set()

    def _run(self) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = list(self._pending.values()), {}
            if not batch:
                continue
            try:
                loop.run_until_complete(
                    self.layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": batch})
                )
            except Exception:  # the next batch tries again; the map also resyncs on reconnect
                log.exception("fleet broadcast failed")


_broadcasters: dict[int, FleetBroadcaster] = {}
_broadcasters_lock = threading.Lock()


def _broadcaster(layer: Any) -> FleetBroadcaster:
    # One per layer object (per process, or per test that swaps the layer).
    with _broadcasters_lock:
        broadcaster = _broadcasters.get(id(layer))
        if broadcaster is None or broadcaster.layer is not layer:
            broadcaster = _broadcasters[id(layer)] = FleetBroadcaster(layer)
        return broadcaster
