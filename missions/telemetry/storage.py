"""Writing accepted telemetry: the window's dedupe records, the 1 Hz samples (PostgreSQL and SQLite).

``persist`` stores a batch and returns the ids of the events that were new.
On PostgreSQL a batch of ``COPY_MIN_EVENTS`` or more goes through COPY; a
smaller one (a webhook, a single event) is one statement with the rows as
array parameters. SQLite uses look-ups and ``bulk_create`` inside its
IMMEDIATE transaction. See docs/decisions/0010-telemetry-ingest.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, transaction

from missions.models import TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry.normalize import TelemetryEvent


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
    traceparent: str = ""  # the mission's trace, which a batch's span links to
    fetched_at: float = 0.0


@dataclass(slots=True)
class Accepted:
    """An event that passed validation and the ownership check, on its way to storage."""

    index: int
    event: TelemetryEvent
    mission: MissionInfo
    keep_sample: bool = False
    bucket_s: int = 0


def pg_rows(sql: str, params: list[Any], *, fetch: bool = True) -> list[tuple[Any, ...]]:
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


def mark_samples(accepted: list[Accepted]) -> None:
    """Within the batch, keep the earliest event of each vehicle-second; the index handles other batches."""
    first: dict[tuple[int, int], Accepted] = {}
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
    if ev.vehicle_cert:
        # Only for vehicles that presented an SVID: nothing is added to the others' samples.
        data["vehicle_cert"] = ev.vehicle_cert
    return data


def persist(accepted: list[Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    """Write window rows and samples; return the ids of events that were not stored before.

    An event kept as its vehicle's sample for that second is stored once, in
    the sample row (which holds every field of the normalized event); its
    window row is only the dedupe record. The rest of that second (a vehicle
    reporting faster than 1 Hz) keeps its full payload in the window.
    """
    mark_samples(accepted)
    if connection.vendor == "postgresql":
        if len(accepted) < COPY_MIN_EVENTS:
            return _persist_postgres_merge(accepted, received_at=received_at)
        return _persist_postgres_copy(accepted, received_at=received_at)
    return _persist_generic(accepted, received_at=received_at)


# From this many events a batch goes through COPY; below it, one statement with
# the rows as array parameters saves the look-ups' and the COPYs' round trips.
COPY_MIN_EVENTS = 50

# Both look-ups name the time of each row they look for: on PostgreSQL the tables are partitioned
# by time (docs/decisions/0028-telemetry-partitions.md), and only that partition's index is probed.
_STORED_EVENTS = """
SELECT w.event_id
FROM missions_telemetrywindowevent w
JOIN unnest(%s::uuid[], %s::timestamptz[]) AS c(event_id, recorded_at) USING (event_id, recorded_at)
"""
_TAKEN_SECONDS = """
SELECT s.vehicle_id, s.bucket_s
FROM missions_telemetrysample s
JOIN unnest(%s::bigint[], %s::bigint[]) AS c(vehicle_id, bucket_s)
  ON s.vehicle_id = c.vehicle_id AND s.bucket_s = c.bucket_s
 AND s.recorded_at >= to_timestamp(c.bucket_s) AND s.recorded_at < to_timestamp(c.bucket_s + 1)
"""


def _already_stored(accepted: list[Accepted]) -> tuple[set[uuid.UUID], set[tuple[int | None, int]]]:
    """Ids among the batch already in the window, and (vehicle, second) pairs that already have a sample.

    Only what could be there is looked up: an event newer than its mission's
    last-seen time cannot have been stored (storing it would have moved last
    seen), and a second after last seen's cannot have a sample. In a live
    1 Hz stream that is every event, so the look-ups usually cost nothing.
    Last seen comes from the mission cache and may lag another process's
    writes; what that misses, the unique indexes catch (``_persist_postgres_copy``).
    """
    stored: set[uuid.UUID] = set()
    older = [a for a in accepted if a.mission.last_seen_at is not None and a.event.ts <= a.mission.last_seen_at]
    if older:
        rows = pg_rows(
            _STORED_EVENTS,
            [array_literal(str(a.event.event_id) for a in older), array_literal(a.event.ts_text for a in older)],
        )
        stored = {row[0] for row in rows}
    candidates = [
        a
        for a in accepted
        if a.keep_sample
        and a.mission.last_seen_at is not None
        and a.bucket_s <= int(a.mission.last_seen_at.timestamp())
        and a.event.event_id not in stored
    ]
    if not candidates:
        return stored, set()
    rows = pg_rows(
        _TAKEN_SECONDS,
        [
            array_literal(str(a.mission.vehicle_pk) for a in candidates),
            array_literal(str(a.bucket_s) for a in candidates),
        ],
    )
    return stored, {(vehicle, second) for vehicle, second in rows}


def _persist_postgres_copy(accepted: list[Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    """COPY straight into the window and the samples, after two indexed look-ups.

    The look-ups leave out events already stored and seconds already sampled,
    so the COPYs cannot conflict unless a concurrent batch wrote the same
    event or second in between; then the unique indexes refuse the COPY, the
    savepoint undoes it, and the batch goes through the merge, which resolves
    both conflicts. Cheaper than always merging: no conflict checks per row.
    """
    import psycopg

    stored, taken = _already_stored(accepted)
    fresh = [a for a in accepted if a.event.event_id not in stored] if stored else accepted
    if not fresh:
        return set()
    for a in fresh:
        if a.keep_sample and (a.mission.vehicle_pk, a.bucket_s) in taken:
            a.keep_sample = False  # its second has a sample: the full payload goes to the window
    window_rows, sample_rows = _copy_rows(fresh, received_at=received_at)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor  # the psycopg cursor: COPY is not part of the DB-API
            with raw.copy(
                "COPY missions_telemetrywindowevent (event_id, mission_id, recorded_at, received_at, payload)"
                " FROM STDIN"
            ) as copy:
                copy.write(window_rows)
            if sample_rows:
                with raw.copy(
                    "COPY missions_telemetrysample (mission_id, vehicle_id, recorded_at, lat, lon, speed_kph,"
                    " heading_deg, autonomy_mode, data, event_id, bucket_s) FROM STDIN"
                ) as copy:
                    copy.write(sample_rows)
    except psycopg.errors.UniqueViolation:
        return _persist_postgres_merge(accepted, received_at=received_at)
    return {a.event.event_id for a in fresh}


def _copy_rows(fresh: list[Accepted], *, received_at: datetime) -> tuple[str, str]:
    """COPY text for the window rows and the sample rows of ``fresh``."""
    dumps = orjson.dumps
    number = _copy_number
    escape = _copy_escape
    received = received_at.isoformat()
    window, samples = [], []
    for a in fresh:
        ev = a.event
        if a.keep_sample:
            event_id = str(ev.event_id)  # once: a UUID spells itself anew on every str()
            window.append(f"{event_id}\t{ev.mission_id}\t{ev.ts_text}\t{received}\t\\N\n")
            samples.append(
                f"{ev.mission_id}\t{a.mission.vehicle_pk}\t{ev.ts_text}\t{ev.lat!r}\t{ev.lon!r}\t"
                f"{number(ev.speed_kph)}\t{number(ev.heading_deg)}\t{ev.autonomy_mode or ''}\t"
                f"{escape(dumps(_sample_data(ev)).decode())}\t{event_id}\t{a.bucket_s}\n"
            )
        else:
            window.append(
                f"{ev.event_id}\t{ev.mission_id}\t{ev.ts_text}\t{received}\t{escape(dumps(ev.to_wire()).decode())}\n"
            )
    return "".join(window), "".join(samples)


# A kept sample that lost its second to another batch (same vehicle, same second,
# committed first) is not in the samples after all: its window row takes the payload.
_WINDOW_PAYLOAD = """
UPDATE missions_telemetrywindowevent w SET payload = v.payload
FROM unnest(%s::uuid[], %s::timestamptz[], %s::jsonb[]) AS v(event_id, recorded_at, payload)
WHERE w.event_id = v.event_id AND w.recorded_at = v.recorded_at
"""


def _copy_escape(json_text: str) -> str:
    # COPY text format: backslash is the escape character. JSON text holds no
    # raw tab, newline or control character (the encoder escapes them inside
    # strings), so doubling backslashes is the whole escaping.
    return json_text.replace("\\", "\\\\") if "\\" in json_text else json_text


def _copy_number(value: float | None) -> str:
    return "\\N" if value is None else repr(value)


# One statement: the rows arrive as array parameters, the JSON columns as text,
# parsed only where they are stored (a kept sample's ``data``; a window row's
# ``payload`` only when it is not a sample). Stored events and sampled seconds
# are skipped by the unique indexes.
_MERGE = """
WITH arrays AS (
    SELECT * FROM unnest(
        %s::uuid[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::text[], %s::bool[], %s::bigint[],
        %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::text[], %s::text[]
    ) AS t(event_id, mission_id, vehicle_id, recorded_at, payload, keep_sample, bucket_s,
           lat, lon, speed_kph, heading_deg, autonomy_mode, data)
),
ins AS (
    INSERT INTO missions_telemetrywindowevent (event_id, mission_id, recorded_at, received_at, payload)
    SELECT event_id, mission_id, recorded_at, %s, CASE WHEN keep_sample THEN NULL ELSE payload::jsonb END
    FROM arrays
    ON CONFLICT DO NOTHING  -- the event is stored: its key, (event_id, recorded_at), is the only unique one
    RETURNING event_id
), samples AS (
    INSERT INTO missions_telemetrysample
        (mission_id, vehicle_id, recorded_at, lat, lon, speed_kph, heading_deg, autonomy_mode, data, event_id, bucket_s)
    SELECT t.mission_id, t.vehicle_id, t.recorded_at, t.lat, t.lon, t.speed_kph, t.heading_deg, t.autonomy_mode,
           t.data::jsonb, t.event_id, t.bucket_s
    FROM arrays t JOIN ins USING (event_id)
    WHERE t.keep_sample
    ON CONFLICT DO NOTHING  -- the second already has its sample (the only unique key a new row can meet)
    RETURNING event_id
)
SELECT ins.event_id, false, t.keep_sample FROM ins JOIN arrays t USING (event_id)
UNION ALL SELECT event_id, true, true FROM samples
"""


def _merge_outcome(
    accepted: list[Accepted], rows: list[tuple[Any, ...]]
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


def _persist_postgres_merge(accepted: list[Accepted], *, received_at: datetime) -> set[uuid.UUID]:
    """Small batches, and a COPY that met a concurrent writer: ``_MERGE`` with the rows as array literals."""
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
        array_literal(str(ev.event_id) for ev in evs),
        array_literal(str(ev.mission_id) for ev in evs),
        array_literal(str(a.mission.vehicle_pk) for a in accepted),
        array_literal(ev.ts_text for ev in evs),
        array_literal(payloads),
        array_literal("t" if a.keep_sample else "f" for a in accepted),
        array_literal(str(a.bucket_s) for a in accepted),
        array_literal(repr(ev.lat) for ev in evs),
        array_literal(repr(ev.lon) for ev in evs),
        array_literal(array_number(ev.speed_kph) for ev in evs),
        array_literal(array_number(ev.heading_deg) for ev in evs),
        array_literal(_array_text(ev.autonomy_mode or "") for ev in evs),
        array_literal(datas),
        received_at,
    ]
    new_ids, lost = _merge_outcome(accepted, pg_rows(_MERGE, params))
    if lost:
        _window_payloads(lost)
    return new_ids


def _window_payloads(events: list[TelemetryEvent]) -> None:
    pg_rows(
        _WINDOW_PAYLOAD,
        [
            [ev.event_id for ev in events],
            [ev.ts for ev in events],
            [orjson.dumps(ev.to_wire()).decode() for ev in events],
        ],
        fetch=False,
    )


# Events stored as their second's sample: the (vehicle, second) index finds the sample, the id decides.
_STORED_AS_SAMPLES = """
SELECT s.event_id
FROM missions_telemetrysample s
JOIN unnest(%s::bigint[], %s::bigint[], %s::uuid[]) AS c(vehicle_id, bucket_s, event_id)
  ON s.vehicle_id = c.vehicle_id AND s.bucket_s = c.bucket_s AND s.event_id = c.event_id
 AND s.recorded_at >= to_timestamp(c.bucket_s) AND s.recorded_at < to_timestamp(c.bucket_s + 1)
"""


def stored_as_samples(accepted: list[Accepted]) -> set[uuid.UUID]:
    """Ids among ``accepted`` that are stored as long-term samples, found by their (vehicle, second).

    The window's dedupe record lives ``TELEMETRY_DEDUPE_SECONDS``; a sample lives
    the retention period. A store-and-forward upload sent again hours later
    (the vehicle did not get the first answer) is recognised this way for every
    event that became its second's sample. Only events up to their mission's
    last-seen second are looked up: a later one cannot have been stored.
    """
    # By whole seconds: last seen is stored to the millisecond, an event's time may be finer.
    older = [
        a
        for a in accepted
        if a.mission.vehicle_pk is not None
        and a.mission.last_seen_at is not None
        and int(a.event.ts.timestamp()) <= int(a.mission.last_seen_at.timestamp())
    ]
    if not older:
        return set()
    if connection.vendor == "postgresql":
        rows = pg_rows(
            _STORED_AS_SAMPLES,
            [
                array_literal(str(a.mission.vehicle_pk) for a in older),
                array_literal(str(int(a.event.ts.timestamp() // 1)) for a in older),
                array_literal(str(a.event.event_id) for a in older),
            ],
        )
        return {row[0] for row in rows}
    from django.db.models import Q

    wanted = {(a.mission.vehicle_pk, int(a.event.ts.timestamp() // 1), a.event.event_id) for a in older}
    by_vehicle: dict[int | None, list[int]] = {}
    for vehicle_pk, second, _ in wanted:
        by_vehicle.setdefault(vehicle_pk, []).append(second)
    query = Q()
    for vehicle_pk, seconds in by_vehicle.items():
        query |= Q(vehicle_id=vehicle_pk, bucket_s__in=seconds)
    found = TelemetrySample.objects.filter(query).values_list("vehicle_id", "bucket_s", "event_id")
    return {event_id for vehicle_pk, second, event_id in found if event_id and (vehicle_pk, second, event_id) in wanted}


def _persist_generic(accepted: list[Accepted], *, received_at: datetime) -> set[uuid.UUID]:
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


def _seconds_taken(candidates: list[Accepted]) -> set[tuple[int | None, int | None]]:
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


def _group_seconds(candidates: list[Accepted]) -> dict[int | None, list[int]]:
    grouped: dict[int | None, list[int]] = {}
    for a in candidates:
        grouped.setdefault(a.mission.vehicle_pk, []).append(a.bucket_s)
    return grouped


def array_literal(items: Iterable[str]) -> str:
    # Elements are digits, ISO timestamps, float reprs or NULL: nothing that needs quoting.
    return "{" + ",".join(items) + "}"


def array_number(value: float | None) -> str:
    return "NULL" if value is None else repr(value)
