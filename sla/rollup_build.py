"""The first build of the SLA buckets for rows already stored, set-based (docs/decisions/0026).

The incremental rollup (``sla.rollups``) applies rows one batch at a time with
row locks: right for the rows of the last few seconds, far too slow for years of
history. When no bucket exists yet, this build takes its place:

1. **Start** (one transaction, every source cursor locked): each cursor is set
   to the last id of its table. Rows past it are left to the incremental
   rollup afterwards; rows up to it are the build's.
2. **Missions**, in id chunks, one transaction each: a chunk's facts are
   computed from the mission rows by the same function as a recompute
   (``rollups.mission_fact``) and inserted in bulk; their counts go on the
   buckets by one ``INSERT ... ON CONFLICT DO UPDATE`` adding to them; their
   coverage cells are made by one ``INSERT ... SELECT ... GROUP BY`` over the
   chunk's telemetry samples (up to the samples cursor), and the cells' counts
   go on the buckets the same way. ``build:missions`` records the last mission
   built, so a stopped build resumes with the next chunk.
3. **Calls** (one transaction): every call up to the calls cursor, summed per
   minute, hour and day in one pass, inserted.

While a build is unfinished the incremental rollup does nothing (a mission
recomputed by it before the build reached it would be counted twice). The
same SQL runs on PostgreSQL and SQLite; only the epoch of a timestamp is
spelled per vendor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Max

from missions.models import Mission, TelemetrySample
from sla import rollups
from sla.models import CoverageCell, MissionFact, RollupCarrier, RollupCursor, SLIBucket
from sla.selectors import api_call_counted, carrier_exclusions

CHUNK = 50_000  # missions per transaction
BUILD, BUILD_MISSIONS, BUILD_CALLS = "build", "build:missions", "build:calls"
Progress = Callable[[str], None]


def in_progress() -> bool:
    return RollupCursor.objects.filter(name=BUILD).exists()


def _empty() -> bool:
    return not (MissionFact.objects.exists() or SLIBucket.objects.exists() or CoverageCell.objects.exists())


def start() -> bool:
    """Begin a first build when there is nothing built yet (or resume one); False: use the incremental rollup."""
    with transaction.atomic():
        for name in rollups.SOURCES:
            rollups._cursor_locked(name)
        cursors = {c.name: c for c in RollupCursor.objects.select_for_update().filter(name__in=rollups.SOURCES)}
        if in_progress():
            return True
        if not _empty():
            return False
        for name, cursor in cursors.items():
            table = rollups._source_table(name)
            top = table.objects.aggregate(top=Max("pk"))["top"] if table is not None else None
            cursor.position, cursor.done_above, cursor.gaps_seen = int(top or 0), [], {}
            cursor.save(update_fields=["position", "done_above", "gaps_seen", "updated_at"])
        RollupCursor.objects.bulk_create(
            [
                RollupCursor(name=BUILD, position=cursors["missions"].position),
                RollupCursor(name=BUILD_MISSIONS, position=0),
                RollupCursor(name=BUILD_CALLS, position=0),
            ]
        )
    return True


def build(*, max_seconds: float = float("inf"), progress: Progress | None = None) -> bool:
    """Run (or resume) a first build; True when it is finished (or there was none to run)."""
    if not start():
        return True
    deadline = time.monotonic() + max_seconds
    say = progress or (lambda _line: None)
    target = RollupCursor.objects.get(name=BUILD).position
    while time.monotonic() < deadline:
        done, last = missions_chunk(target)
        if not done:
            break
        say(f"missions built up to id {last:,} of {target:,}")
    else:
        return False
    if calls_all():
        say("outbound calls built")
    finish()
    say("first build finished")
    return True


def missions_chunk(target: int) -> tuple[int, int]:
    """Build the next chunk of missions (ids up to ``target``); (missions built, last id)."""
    with transaction.atomic():
        state = RollupCursor.objects.select_for_update().get(name=BUILD_MISSIONS)  # one builder at a time
        rows = list(
            Mission.objects.filter(pk__gt=state.position, pk__lte=target)
            .order_by("pk")
            .values(*rollups.MISSION_FIELDS)[:CHUNK]
        )
        if not rows:
            return 0, state.position
        params: dict[int, RollupCarrier] = {}
        exclusions: dict[int, list[tuple[datetime, datetime]]] = {}
        deltas = rollups.Deltas()
        facts = []
        for row in rows:
            c = row["carrier_id"]
            if c not in exclusions:
                exclusions[c] = carrier_exclusions(c)
            fact = rollups.mission_fact(row, rollups.carrier_params(c, params).gap_seconds, exclusions[c])
            rollups._fact_apply(deltas, fact, 1)
            facts.append(fact)
        MissionFact.objects.bulk_create(facts, batch_size=2000)
        buckets_add(deltas)
        lo, hi = rows[0]["id"], rows[-1]["id"]
        cells_build(lo, hi)
        state.position = hi
        state.save(update_fields=["position", "updated_at"])
        return len(rows), hi


def _epoch_seconds(column: str) -> str:
    """Whole Unix seconds of a timestamp column (floor; k = seconds // g then equals floor(t / g))."""
    if connection.vendor == "postgresql":
        return f"floor(extract(epoch from {column}))::bigint"
    return f"CAST(strftime('%%s', {column}) AS INTEGER)"  # %% : the query has parameters


def _empty_json() -> str:
    return "'{}'::jsonb" if connection.vendor == "postgresql" else "'{}'"


UPSERT = (
    " ON CONFLICT (carrier_id, family, tier, key) DO UPDATE SET"
    " n1 = {t}.n1 + excluded.n1, n2 = {t}.n2 + excluded.n2, n3 = {t}.n3 + excluded.n3,"
    " n4 = {t}.n4 + excluded.n4, n5 = {t}.n5 + excluded.n5, n6 = {t}.n6 + excluded.n6"
)


def cells_build(lo: int, hi: int) -> None:
    """Coverage cells of missions ``lo..hi`` from their samples (up to the samples cursor), and their counts."""
    cell, fact, sample, bucket = (m._meta.db_table for m in (CoverageCell, MissionFact, TelemetrySample, SLIBucket))
    last_sample = RollupCursor.objects.get(name="samples").position
    k = f"{_epoch_seconds('s.recorded_at')} / f.gap_seconds"
    true = "true" if connection.vendor == "postgresql" else "1"
    # Table names come from the models' metadata; every value is a parameter.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {cell} (mission_id, k, carrier_id, last_at)"  # noqa: S608  # nosec B608
            f" SELECT s.mission_id, {k}, f.carrier_id, max(s.recorded_at)"
            f" FROM {sample} s JOIN {fact} f ON f.mission_id = s.mission_id"
            f" WHERE s.mission_id >= %s AND s.mission_id <= %s AND s.id <= %s AND f.tel_counted = {true}"
            " AND s.recorded_at >= f.started_at AND (f.completed_at IS NULL OR s.recorded_at < f.completed_at)"
            f" GROUP BY s.mission_id, {k}, f.carrier_id",
            [lo, hi, last_sample],
        )
        for tier, key in ((0, "k"), (1, f"k / {rollups.BLOCK}")):
            cursor.execute(
                f"INSERT INTO {bucket} (carrier_id, family, tier, key, n1, n2, n3, n4, n5, n6, hist)"  # noqa: S608  # nosec B608
                f" SELECT carrier_id, 'T', {tier}, {key}, 0, 0, count(*), 0, 0, 0, {_empty_json()}"
                f" FROM {cell} WHERE mission_id >= %s AND mission_id <= %s"
                f" GROUP BY carrier_id, {key}" + UPSERT.format(t=bucket),
                [lo, hi],
            )


def buckets_add(deltas: rollups.Deltas) -> None:
    """Add counts (no histograms) to bucket rows, creating the missing ones: batched multi-row upserts."""
    rows: list[tuple[Any, ...]] = [(*key, *values) for key, values in sorted(deltas.rows.items()) if any(values)]
    table = SLIBucket._meta.db_table
    per = max(1, min(500, connection.ops.bulk_batch_size(["x"] * 10, rows) if rows else 500))
    with connection.cursor() as cursor:
        for n in range(0, len(rows), per):
            chunk = rows[n : n + per]
            holes = ", ".join(f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {_empty_json()})" for _ in chunk)
            cursor.execute(
                f"INSERT INTO {table} (carrier_id, family, tier, key, n1, n2, n3, n4, n5, n6, hist)"  # noqa: S608  # nosec B608
                f" VALUES {holes}" + UPSERT.format(t=table),
                [cast(Any, v) for row in chunk for v in row],
            )
    deltas.rows.clear()


def calls_all() -> bool:
    """Every outbound call up to the calls cursor, summed in one pass; False when already built."""
    model = rollups.outbound_model()
    with transaction.atomic():
        state = RollupCursor.objects.select_for_update().get(name=BUILD_CALLS)
        if state.position or model is None:
            return False
        last = RollupCursor.objects.get(name="calls").position
        rows = (
            model.objects.filter(pk__lte=last)
            .annotate(counted=ExpressionWrapper(api_call_counted(), output_field=BooleanField()))
            .values_list("carrier_id", "started_at", "latency_ms", "ok", "counted")
        )
        deltas = rollups.Deltas()
        params: dict[int, RollupCarrier] = {}
        for c, started_at, latency_ms, ok, counted in rows.iterator(chunk_size=rollups.BATCH):
            target = rollups.carrier_params(c, params).latency_target_ms
            minute = rollups.minute_of(started_at)
            deltas.both(c, "A", minute, [1, int(counted), int(ok), int(latency_ms <= target)])
            deltas.hist(c, "A", minute, rollups.latency_bin(latency_ms))
        _insert_new(deltas)
        state.position = 1
        state.save(update_fields=["position", "updated_at"])
    return True


def _insert_new(deltas: rollups.Deltas) -> None:
    """Insert bucket rows of a family no row exists for yet (the calls of a first build)."""
    objs = [
        SLIBucket(carrier_id=c, family=f, tier=t, key=k, n1=v[0], n2=v[1], n3=v[2], n4=v[3], n5=v[4], n6=v[5],
                  hist=deltas.hists.get((c, f, t, k), {}))
        for (c, f, t, k), v in sorted(deltas.rows.items())
    ]  # fmt: skip
    SLIBucket.objects.bulk_create(objs, batch_size=2000)


def finish() -> None:
    with transaction.atomic():
        RollupCursor.objects.filter(name__in=[BUILD, BUILD_MISSIONS, BUILD_CALLS]).delete()
        RollupCarrier.objects.filter(built_at__isnull=True).update(built_at=datetime.now(tz=UTC))


def left() -> dict[str, int]:
    """Missions the unfinished build has still to do (empty when none is running)."""
    states = dict(RollupCursor.objects.filter(name__in=[BUILD, BUILD_MISSIONS]).values_list("name", "position"))
    if BUILD not in states:
        return {}
    todo = Mission.objects.filter(pk__gt=states.get(BUILD_MISSIONS, 0), pk__lte=states[BUILD]).count()
    return {"missions": todo}
