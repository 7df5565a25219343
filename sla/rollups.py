"""Exact SLI buckets: the only code that writes them (docs/decisions/0026).

The write paths of missions, calls and telemetry are not touched. A rollup
reads what changed since its cursors, in id order, and applies it:

* ``missions``: new mission rows (ids past the cursor), and ``events``: audit
  events past theirs that touch a mission (``mission.*``, ``shipment.*`` for its
  missions, ``sla.exclusion_added`` for the missions overlapping it). Each such
  mission is *recomputed*: its fact row is locked, its old contribution is
  taken off the buckets and the new one, from the mission's current row, put
  on. Recomputing twice changes nothing, so a retried or concurrent rollup
  cannot count a mission twice.
* ``calls``: outbound calls are append-only; each id is applied once, in the
  transaction that moves the cursor (the cursor row is locked).
* ``samples``: telemetry samples fill ``CoverageCell`` rows, unique per
  (mission, gap bucket); only a cell that did not exist adds to the buckets.

An id the cursor reaches that is not committed yet (an open transaction) is
waited for ``SLA_ROLLUP_GAP_GRACE_SECONDS``; ids after it are applied and
remembered in ``done_above`` so they are not applied again. An id committed
later than the grace would be missed: the daily recount (``sla_recount``)
finds such drift, raises an incident and repairs it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q

from missions.choices import MissionStatus
from missions.models import AuditEvent, Mission, TelemetrySample
from sla.models import ContractExclusion, CoverageCell, MissionFact, RollupCarrier, RollupCursor, SLIBucket
from sla.selectors import FINISHED, api_call_counted, carrier_exclusions, contract_in_force
from sla.sli import Targets

BLOCK = 60  # fine buckets per coarse bucket (minutes per hour; gap buckets per coarse telemetry row)
BATCH = 5000
OPEN_TIER = 3  # family T: one row per carrier (key 0), n1 the missions running (counted for telemetry)
LATENCY_GAMMA = 1.02  # latency bins: (gamma^(i-1), gamma^i] ms, a relative error under 1 % at the bin's midpoint
Delta = dict[tuple[int, str, int, int], list[int]]


def grace_seconds() -> float:
    return float(getattr(settings, "SLA_ROLLUP_GAP_GRACE_SECONDS", 300))


def enabled() -> bool:
    return bool(getattr(settings, "SLA_ROLLUPS", True))


def minute_of(t: datetime) -> int:
    return math.floor(t.timestamp() / 60)


def latency_bin(ms: float) -> int:
    return 0 if ms <= 1 else math.ceil(math.log(ms) / math.log(LATENCY_GAMMA) - 1e-9)


def latency_of_bin(index: int) -> float:
    """The value reported for a bin: its midpoint in relative terms, within 1 % of any latency in it."""
    if index <= 0:
        return 1.0
    return 2 * LATENCY_GAMMA**index / (1 + LATENCY_GAMMA)


# --- Buckets ---------------------------------------------------------------------------------


class Deltas:
    """Counts to add to bucket rows, applied at once under row locks in key order (no deadlocks)."""

    def __init__(self) -> None:
        self.rows: Delta = defaultdict(lambda: [0] * 6)
        self.hists: dict[tuple[int, str, int, int], dict[str, int]] = defaultdict(dict)

    def add(self, carrier_id: int, family: str, tier: int, key: int, values: Sequence[int], sign: int = 1) -> None:
        row = self.rows[(carrier_id, family, tier, key)]
        for n, v in enumerate(values):
            row[n] += sign * v

    def both(self, carrier_id: int, family: str, fine: int, values: Sequence[int], sign: int = 1) -> None:
        self.add(carrier_id, family, 0, fine, values, sign)
        self.add(carrier_id, family, 1, fine // BLOCK, values, sign)

    def hist(self, carrier_id: int, family: str, fine: int, bin_: int, sign: int = 1) -> None:
        """A latency bin, on the minute, the hour and the day (long windows read 30 day histograms, not 720)."""
        keys = ((carrier_id, family, 0, fine), (carrier_id, family, 1, fine // BLOCK),
                (carrier_id, family, 2, fine // (BLOCK * 24)))  # fmt: skip
        for key in keys:
            h = self.hists[key]
            h[str(bin_)] = h.get(str(bin_), 0) + sign
            self.rows[key]

    def apply(self) -> None:
        keys = sorted(k for k, v in self.rows.items() if any(v) or self.hists.get(k))
        if not keys:
            return
        for chunk in _chunks(keys, 500):
            SLIBucket.objects.bulk_create(
                [SLIBucket(carrier_id=c, family=f, tier=t, key=k) for c, f, t, k in chunk], ignore_conflicts=True
            )
            q = Q(pk__in=[])
            for c, f, t, k in chunk:
                q |= Q(carrier_id=c, family=f, tier=t, key=k)
            rows = list(SLIBucket.objects.select_for_update().filter(q).order_by("carrier_id", "family", "tier", "key"))
            for row in rows:
                key = (row.carrier_id, row.family, row.tier, row.key)
                d = self.rows[key]
                row.n1, row.n2, row.n3 = row.n1 + d[0], row.n2 + d[1], row.n3 + d[2]
                row.n4, row.n5, row.n6 = row.n4 + d[3], row.n5 + d[4], row.n6 + d[5]
                if key in self.hists:
                    merged = dict(row.hist or {})
                    for b, n in self.hists[key].items():
                        merged[b] = merged.get(b, 0) + n
                        if not merged[b]:
                            del merged[b]
                    row.hist = merged
            _update_many(SLIBucket, rows, ["n1", "n2", "n3", "n4", "n5", "n6", "hist"], "id")
        self.rows.clear()
        self.hists.clear()


FACT_FIELDS = ["carrier_id", "completed_at", "started_at", "counts", "tel_counted", "tel_open", "tel_start_k",
               "tel_end_k", "gap_seconds"]  # fmt: skip


def _update_many(model: Any, objs: Sequence[Any], fields: Sequence[str], key: str) -> None:
    """One UPDATE per row by primary key, sent as a batch (executemany): linear, unlike a CASE per field."""
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(f) for f in fields]
    pk = meta.get_field(key)
    qn = connection.ops.quote_name
    # Table and column names come from the model's metadata, never from input.
    assignments = ", ".join(f"{qn(c.column)} = %s" for c in columns)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(pk.column)} = %s"  # noqa: S608  # nosec B608
    params = [
        [*(c.get_db_prep_save(getattr(o, c.attname), connection) for c in columns), getattr(o, pk.attname)]
        for o in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for n in range(0, len(items), size):
        yield items[n : n + size]


# --- Per-carrier build parameters ---------------------------------------------------------------


def carrier_params(carrier_id: int, cache: dict[int, RollupCarrier] | None = None) -> RollupCarrier:
    """The gap and latency target the carrier's buckets use (the contract in force when first built)."""
    if cache is not None and carrier_id in cache:
        return cache[carrier_id]
    state = RollupCarrier.objects.filter(carrier_id=carrier_id).first()
    if state is None:
        targets = Targets.of(contract_in_force(carrier_id, datetime.now(tz=UTC).date()))
        RollupCarrier.objects.bulk_create(
            [
                RollupCarrier(
                    carrier_id=carrier_id,
                    gap_seconds=max(int(targets.telemetry_gap_seconds), 1),
                    latency_target_ms=targets.api_latency_p99_ms,
                )
            ],
            ignore_conflicts=True,
        )
        state = RollupCarrier.objects.get(carrier_id=carrier_id)
    if cache is not None:
        cache[carrier_id] = state
    return state


# --- Missions ---------------------------------------------------------------------------------


def _overlaps(exclusions: Sequence[tuple[datetime, datetime]], started: datetime | None, done: datetime | None) -> bool:
    """The mission's active time meets an exclusion (same rule as ``selectors._mission_overlaps``)."""
    for ex_start, ex_end in exclusions:
        begins = started if started is not None else done
        if begins is None or begins >= ex_end:
            continue
        if done is None or done > ex_start:
            return True
    return False


def mission_fact(row: dict[str, Any], g: int, exclusions: Sequence[tuple[datetime, datetime]]) -> MissionFact:
    """A mission's contribution from its current row (``status``, times, due, human flag)."""
    status, started, done = row["status"], row["started_at"], row["completed_at"]
    excluded = _overlaps(exclusions, started, done)
    counts: list[int] = []
    if done is not None and status in (*FINISHED, MissionStatus.CANCELLED) and not excluded:
        completed = status == MissionStatus.COMPLETED
        due = row["shipment__delivery_window_end"]
        counts = [
            int(status in FINISHED),
            int(completed and due is not None and done <= due),
            int(completed and not row["human_intervened"]),
            int(status == MissionStatus.FAILED),
            int(status == MissionStatus.HANDED_OVER),
            int(status == MissionStatus.CANCELLED),
        ]
    tel = started is not None and status != MissionStatus.CANCELLED and not excluded
    tel = tel and (done is None or done > started)
    return MissionFact(
        mission_id=row["id"],
        carrier_id=row["carrier_id"],
        completed_at=done,
        started_at=started,
        counts=counts,
        tel_counted=tel,
        tel_open=tel and done is None,
        tel_start_k=math.floor(started.timestamp() / g) if tel and done is not None else None,
        tel_end_k=math.ceil(done.timestamp() / g) if tel and done is not None else None,
        gap_seconds=g,
    )


def _fact_apply(deltas: Deltas, fact: MissionFact, sign: int) -> None:
    """Put a fact's mission counts and finished telemetry interval on the buckets (sign -1 takes them off)."""
    c = fact.carrier_id
    if fact.counts and fact.completed_at is not None:
        deltas.both(c, "M", minute_of(fact.completed_at), fact.counts, sign)
    if fact.tel_start_k is not None and fact.tel_end_k is not None:
        ks, ke = fact.tel_start_k, fact.tel_end_k
        deltas.add(c, "T", 0, ks, [1, 0, 0], sign)
        deltas.add(c, "T", 0, ke, [0, 1, 0], sign)
        for block in range(ks // BLOCK, (ke - 1) // BLOCK + 1):
            lo, hi = max(ks, block * BLOCK), min(ke, (block + 1) * BLOCK)
            active_at_start = int(ks <= block * BLOCK < ke)
            deltas.add(c, "T", 1, block, [hi - lo, active_at_start, 0, int(block == ks // BLOCK)], sign)
    if fact.tel_open and fact.started_at is not None:
        # A running mission: its start gap bucket, summed by block (count, offsets) and carrier-wide, so a
        # window reads what running missions expect from a few rows, not one per running mission.
        sk = math.floor(fact.started_at.timestamp() / fact.gap_seconds)
        block = sk // BLOCK
        deltas.add(c, "T", 0, sk, [0, 0, 0, 1], sign)
        deltas.add(c, "T", 1, block, [0, 0, 0, 0, 1, sk - block * BLOCK], sign)
        deltas.add(c, "T", OPEN_TIER, 0, [1], sign)


def _same_telemetry(a: MissionFact, b: MissionFact) -> bool:
    return (a.tel_counted, a.started_at, a.completed_at, a.gap_seconds) == (
        b.tel_counted,
        b.started_at,
        b.completed_at,
        b.gap_seconds,
    )


MISSION_FIELDS = ("id", "carrier_id", "status", "started_at", "completed_at", "human_intervened",
                  "shipment__delivery_window_end")  # fmt: skip


def missions_recompute(mission_ids: Iterable[int], *, rebuild_cells: bool = False) -> int:
    """Bring the facts (and buckets) of these missions in line with their rows; the number recomputed.

    Runs in the caller's transaction; each fact row is locked first, in id order.
    """
    ids = sorted(set(mission_ids))
    done = 0
    params: dict[int, RollupCarrier] = {}
    exclusions: dict[int, list[tuple[datetime, datetime]]] = {}
    for chunk in _chunks(ids, BATCH):
        rows = {r["id"]: r for r in Mission.objects.filter(pk__in=chunk).values(*MISSION_FIELDS)}
        placeholders = [MissionFact(mission_id=i, carrier_id=rows[i]["carrier_id"]) for i in chunk if i in rows]
        MissionFact.objects.bulk_create(placeholders, ignore_conflicts=True)
        old = {f.mission_id: f for f in MissionFact.objects.select_for_update().filter(pk__in=chunk).order_by("pk")}
        deltas = Deltas()
        new_facts: list[MissionFact] = []
        cells_for: list[MissionFact] = []
        gone: list[int] = []
        for mission_id in chunk:
            before = old.get(mission_id)
            row = rows.get(mission_id)
            if before is not None:
                _fact_apply(deltas, before, -1)
            if row is None:
                gone.append(mission_id)
                continue
            carrier_id = row["carrier_id"]
            g = carrier_params(carrier_id, params).gap_seconds
            if carrier_id not in exclusions:
                exclusions[carrier_id] = carrier_exclusions(carrier_id)
            fact = mission_fact(row, g, exclusions[carrier_id])
            _fact_apply(deltas, fact, 1)
            new_facts.append(fact)
            if rebuild_cells or before is None or not _same_telemetry(before, fact) or before.carrier_id != carrier_id:
                cells_for.append(fact)
        _update_many(MissionFact, new_facts, FACT_FIELDS, "mission_id")
        if gone:
            _cells_drop(deltas, gone)
            MissionFact.objects.filter(pk__in=gone).delete()
        if cells_for:
            _cells_rebuild(deltas, cells_for)
        deltas.apply()
        done += len(chunk)
    return done


def _cells_drop(deltas: Deltas, mission_ids: Sequence[int]) -> None:
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(CoverageCell._meta.db_table)
        with connection.cursor() as cursor:
            # The table name comes from the model's metadata; the ids are a parameter.
            cursor.execute(
                f"DELETE FROM {table} WHERE mission_id = ANY(%s) RETURNING carrier_id, k",  # noqa: S608  # nosec B608
                [list(mission_ids)],
            )
            gone = cursor.fetchall()
    else:
        cells = CoverageCell.objects.filter(mission_id__in=mission_ids)
        gone = list(cells.values_list("carrier_id", "k"))
        cells.delete()
    for carrier_id, k in gone:
        deltas.both(carrier_id, "T", k, [0, 0, 1], -1)


def _cell_of(fact: MissionFact, recorded_at: datetime) -> int | None:
    """The gap bucket a sample covers for this mission, None when it does not count."""
    if not fact.tel_counted or fact.started_at is None or recorded_at < fact.started_at:
        return None
    if fact.completed_at is not None and recorded_at >= fact.completed_at:
        return None
    return math.floor(recorded_at.timestamp() / fact.gap_seconds)


def _cells_rebuild(deltas: Deltas, facts: Sequence[MissionFact]) -> None:
    """Drop the missions' cells and make them again from their samples (a mission started, ended, moved)."""
    _cells_drop(deltas, [f.mission_id for f in facts])
    by_id = {f.mission_id: f for f in facts if f.tel_counted}
    if not by_id:
        return
    made = _cells_make_postgres(list(by_id)) if connection.vendor == "postgresql" else _cells_make(by_id)
    for carrier_id, k in made:
        deltas.both(carrier_id, "T", k, [0, 0, 1])


def _cells_select(sample_filter: str) -> str:
    """SQL of the cells ``(mission, k, carrier, latest sample)`` of the samples ``s`` matching ``sample_filter``,
    grouped in PostgreSQL with ``_cell_of``'s rules (counted, started, not after completion) read from the
    missions' fact rows ``f``. Table names come from the models' metadata, never from input."""
    table = connection.ops.quote_name(TelemetrySample._meta.db_table)
    facts_table = connection.ops.quote_name(MissionFact._meta.db_table)
    return (
        " SELECT s.mission_id, floor(extract(epoch FROM s.recorded_at) / f.gap_seconds)::bigint AS k,"  # noqa: S608  # nosec B608
        " f.carrier_id, max(s.recorded_at)"
        f" FROM {table} s JOIN {facts_table} f ON f.mission_id = s.mission_id"
        f" WHERE {sample_filter} AND f.tel_counted AND f.started_at IS NOT NULL"
        " AND s.recorded_at >= f.started_at AND (f.completed_at IS NULL OR s.recorded_at < f.completed_at)"
        " GROUP BY s.mission_id, 2, f.carrier_id ORDER BY s.mission_id, 2"
    )


def _cells_make_postgres(mission_ids: list[int]) -> list[tuple[int, int]]:
    """The missions' cells from all their samples, from the fact rows the caller has just written; the
    ``(carrier, k)`` made."""
    cells_table = connection.ops.quote_name(CoverageCell._meta.db_table)
    with connection.cursor() as cursor:
        # The ids are a parameter.
        cursor.execute(
            f"INSERT INTO {cells_table} (mission_id, k, carrier_id, last_at)"  # nosec B608
            + _cells_select("s.mission_id = ANY(%s)")
            + " RETURNING carrier_id, k",
            [mission_ids],
        )
        return [(carrier_id, k) for carrier_id, k in cursor.fetchall()]


def _cells_make(by_id: dict[int, MissionFact]) -> list[tuple[int, int]]:
    latest: dict[tuple[int, int], datetime] = {}
    samples = TelemetrySample.objects.filter(mission_id__in=list(by_id)).values_list("mission_id", "recorded_at")
    for mission_id, recorded_at in samples.iterator(chunk_size=BATCH):
        k = _cell_of(by_id[mission_id], recorded_at)
        if k is not None and recorded_at > latest.get((mission_id, k), datetime.min.replace(tzinfo=UTC)):
            latest[(mission_id, k)] = recorded_at
    cells = [CoverageCell(mission_id=m, k=k, carrier_id=by_id[m].carrier_id, last_at=t) for (m, k), t in latest.items()]
    CoverageCell.objects.bulk_create(cells, batch_size=BATCH)
    return [(cell.carrier_id, cell.k) for cell in cells]


# --- Samples and calls (append-only) -----------------------------------------------------------------


def samples_apply(rows: Sequence[tuple[int, int, datetime]]) -> None:
    """Cells for new samples ``(id, mission_id, recorded_at)``; only a new cell adds to the buckets."""
    mission_ids = sorted({m for _, m, _ in rows})
    missing = set(mission_ids) - set(MissionFact.objects.filter(pk__in=mission_ids).values_list("pk", flat=True))
    if missing:
        missions_recompute(missing)  # builds their cells from every sample, these included
    # Share-lock the facts: a mission recompute (which rebuilds cells) waits, and is waited for.
    facts = {f.mission_id: f for f in MissionFact.objects.select_for_update().filter(pk__in=mission_ids).order_by("pk")}
    latest: dict[tuple[int, int], datetime] = {}
    for _, mission_id, recorded_at in rows:
        if mission_id in missing or mission_id not in facts:
            continue
        k = _cell_of(facts[mission_id], recorded_at)
        if k is not None and recorded_at > latest.get((mission_id, k), datetime.min.replace(tzinfo=UTC)):
            latest[(mission_id, k)] = recorded_at
    _cells_raise({m: f.carrier_id for m, f in facts.items()}, latest)


def samples_apply_range(first: int, last: int, skip: Sequence[tuple[int, int]] = ()) -> None:
    """What ``samples_apply`` does for the samples with ids in ``[first, last]`` but the ``skip`` runs,
    grouped in PostgreSQL.

    A fleet sends a sample per truck every second or so, and a gap bucket (a minute, say) holds tens of
    them: one statement groups them per (mission, bucket), with ``_cell_of``'s rules (counted, started,
    not after completion) in its join, and upserts the cells; no sample or cell row comes to Python. A
    sample committed into the range after the caller read its ids is applied here and again when the
    cursor reaches it, which changes nothing: only a cell that did not exist adds to the buckets.
    """
    if last < first:
        return
    table = connection.ops.quote_name(TelemetrySample._meta.db_table)
    where = "s.id BETWEEN %s AND %s" + " AND NOT s.id BETWEEN %s AND %s" * len(skip)
    params: list[Any] = [first, last, *(bound for run in skip for bound in run)]
    with connection.cursor() as cursor:
        # Table names come from the models' metadata, never from input; the bounds are parameters.
        cursor.execute(
            f"SELECT DISTINCT s.mission_id FROM {table} s WHERE {where} AND s.mission_id IS NOT NULL",  # noqa: S608  # nosec B608
            params,
        )
        mission_ids = sorted(row[0] for row in cursor.fetchall())
    if not mission_ids:
        return
    missing = set(mission_ids) - set(MissionFact.objects.filter(pk__in=mission_ids).values_list("pk", flat=True))
    if missing:
        missions_recompute(missing)  # builds their cells from every sample, these included
    # Share-lock the facts: a mission recompute (which rebuilds cells) waits, and is waited for.
    facts = {
        f.mission_id: f.carrier_id
        for f in MissionFact.objects.select_for_update().filter(pk__in=mission_ids).order_by("pk")
        if f.mission_id not in missing
    }
    if not facts:
        return
    cells_table = connection.ops.quote_name(CoverageCell._meta.db_table)
    with connection.cursor() as cursor:
        # One statement makes the new cells and raises the others' latest sample (``_cells_raise``'s work
        # without a Python object per cell); it hands back the cells it made, which add to the buckets.
        cursor.execute(
            f"INSERT INTO {cells_table} AS c (mission_id, k, carrier_id, last_at)"  # nosec B608
            + _cells_select(f"{where} AND f.mission_id = ANY(%s)")
            + " ON CONFLICT (mission_id, k) DO UPDATE SET last_at = EXCLUDED.last_at WHERE c.last_at < EXCLUDED.last_at"
            " RETURNING c.carrier_id, c.k, c.xmax = 0",
            [*params, list(facts)],
        )
        made = [(carrier_id, k) for carrier_id, k, inserted in cursor.fetchall() if inserted]
    deltas = Deltas()
    for carrier_id, k in made:
        deltas.both(carrier_id, "T", k, [0, 0, 1])
    deltas.apply()


def _cells_raise(carriers: dict[int, int], latest: dict[tuple[int, int], datetime]) -> None:
    """Make the cells ``(mission, k)`` not made yet, raise the others' latest sample; new cells add to the buckets.

    ``carriers`` maps each mission to its carrier; the caller holds the missions' fact rows locked.
    """
    if not latest:
        return
    ks = [k for _, k in latest]
    near = CoverageCell.objects.filter(mission_id__in={m for m, _ in latest}, k__gte=min(ks), k__lte=max(ks))
    existing = {(c.mission_id, c.k): c for c in near if (c.mission_id, c.k) in latest}
    deltas = Deltas()
    new_cells = []
    raised = []
    for (mission_id, k), t in latest.items():
        cell = existing.get((mission_id, k))
        if cell is None:
            new_cells.append(CoverageCell(mission_id=mission_id, k=k, carrier_id=carriers[mission_id], last_at=t))
        elif t > cell.last_at:
            cell.last_at = t
            raised.append(cell)
    CoverageCell.objects.bulk_create(new_cells, batch_size=BATCH)  # the facts' locks keep this race-free
    # Only the SQLite path comes here: PostgreSQL upserts its cells in ``samples_apply_range``.
    CoverageCell.objects.bulk_update(raised, ["last_at"], batch_size=BATCH)
    for cell in new_cells:
        deltas.both(cell.carrier_id, "T", cell.k, [0, 0, 1])
    deltas.apply()


def outbound_model() -> Any:
    try:
        return apps.get_model("missions", "OutboundCall")
    except LookupError:
        return None


def calls_apply(rows: Sequence[dict[str, Any]]) -> None:
    """Count new outbound calls in their minute: calls, counted, ok, within the target, latency bin."""
    deltas = Deltas()
    params: dict[int, RollupCarrier] = {}
    for r in rows:
        c = r["carrier_id"]
        target = carrier_params(c, params).latency_target_ms
        minute = minute_of(r["started_at"])
        deltas.both(c, "A", minute, [1, int(r["counted"]), int(r["ok"]), int(r["latency_ms"] <= target)])
        deltas.hist(c, "A", minute, latency_bin(r["latency_ms"]))
    deltas.apply()


# --- Cursors ------------------------------------------------------------------------------------------


def _runs(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as ``[first, last]`` runs: a long wait on a gap keeps a few runs, not every id."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


class Applied:
    """Membership in a cursor's ``done_above`` runs."""

    def __init__(self, runs: Sequence[Sequence[int]]) -> None:
        self.runs = [(int(a), int(b)) for a, b in runs]

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and any(a <= i <= b for a, b in self.runs)

    def ids(self) -> list[int]:
        return [i for a, b in self.runs for i in range(a, b + 1)]


def _cursor_advance(cursor: RollupCursor, ids: Iterable[int], clock: Callable[[], float]) -> None:
    """Move ``position`` over every applied id, and over a gap waited for longer than the grace."""
    runs = sorted([*(tuple(r) for r in cursor.done_above), *((a, b) for a, b in _runs(ids))])
    seen = {int(k): v for k, v in (cursor.gaps_seen or {}).items()}
    now = clock()
    position = cursor.position
    for a, b in runs:
        if b <= position:
            continue
        expected = position + 1
        if a > expected and now - seen.setdefault(expected, now) < grace_seconds():
            break
        position = b
    cursor.position = position
    cursor.done_above = _merge([[max(a, position + 1), b] for a, b in runs if b > position])
    cursor.gaps_seen = {str(k): v for k, v in seen.items() if k > position}
    cursor.save(update_fields=["position", "done_above", "gaps_seen", "updated_at"])


def _merge(runs: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _source_table(name: str) -> Any:
    return {"missions": Mission, "exclusions": ContractExclusion, "events": AuditEvent,
            "samples": TelemetrySample, "calls": outbound_model()}[name]  # fmt: skip


def _cursor_locked(name: str) -> RollupCursor | None:
    """The source's cursor, locked; None while another rollup holds it (it is catching up already).

    A new cursor starts just before the table's first row (ids below it were never used or are gone).
    """
    if not RollupCursor.objects.filter(name=name).exists():
        table = _source_table(name)
        first = table.objects.order_by("pk").values_list("pk", flat=True).first() if table is not None else None
        RollupCursor.objects.bulk_create([RollupCursor(name=name, position=(first or 1) - 1)], ignore_conflicts=True)
    skip = connection.features.has_select_for_update_skip_locked
    return RollupCursor.objects.select_for_update(skip_locked=skip).filter(name=name).first()


def _source_round(name: str, clock: Callable[[], float]) -> int:
    """One batch of one source, in one transaction with its cursor locked; rows read (0: caught up)."""
    with transaction.atomic():
        cursor = _cursor_locked(name)
        if cursor is None:
            return 0
        skip = Applied(cursor.done_above)
        if name == "missions":
            ids = list(
                Mission.objects.filter(pk__gt=cursor.position).order_by("pk").values_list("pk", flat=True)[:BATCH]
            )
            todo = [i for i in ids if i not in skip]
            missions_recompute(todo)
        elif name == "events":
            ids, todo = _events_read(cursor.position, skip)
            missions_recompute(todo)
        elif name == "exclusions":
            found = list(
                ContractExclusion.objects.filter(pk__gt=cursor.position)
                .order_by("pk")
                .values_list("pk", "contract__carrier_id")[:BATCH]
            )
            ids = [pk for pk, _ in found]
            for carrier_id in sorted({c for pk, c in found if pk not in skip}):
                missions_recompute(_missions_near_exclusions(carrier_id))
        elif name == "samples" and connection.vendor == "postgresql":
            ids = list(
                TelemetrySample.objects.filter(pk__gt=cursor.position)
                .order_by("pk")
                .values_list("pk", flat=True)[: BATCH * 4]
            )
            if ids:
                samples_apply_range(cursor.position + 1, ids[-1], skip.runs)
        elif name == "samples":
            sample_rows = list(
                TelemetrySample.objects.filter(pk__gt=cursor.position)
                .order_by("pk")
                .values_list("pk", "mission_id", "recorded_at")[: BATCH * 4]
            )
            ids = [r[0] for r in sample_rows]
            samples_apply([r for r in sample_rows if r[0] not in skip])
        else:
            model = outbound_model()
            if model is None:
                return 0
            call_rows = list(
                model.objects.filter(pk__gt=cursor.position)
                .annotate(counted=ExpressionWrapper(api_call_counted(), output_field=BooleanField()))
                .order_by("pk")
                .values("pk", "carrier_id", "started_at", "latency_ms", "ok", "counted")[:BATCH]
            )
            ids = [r["pk"] for r in call_rows]
            calls_apply([r for r in call_rows if r["pk"] not in skip])
        if ids:
            _cursor_advance(cursor, ids, clock)
        return len([i for i in ids if i not in skip])


MISSION_ACTIONS = ("mission.", "shipment.")


def _events_read(position: int, skip: Applied) -> tuple[list[int], list[int]]:
    """Audit events past the cursor, and the missions they touch."""
    rows = list(
        AuditEvent.objects.filter(pk__gt=position)
        .order_by("pk")
        .values_list("pk", "action", "subject_type", "subject_id", "after")[:BATCH]
    )
    missions: set[int] = set()
    shipments: set[int] = set()
    for pk, action, subject_type, subject_id, _after in rows:
        if pk in skip or not action.startswith(MISSION_ACTIONS):
            continue
        if subject_type == "mission":
            missions.add(subject_id)
        elif subject_type == "shipment":
            shipments.add(subject_id)
    if shipments:
        missions.update(Mission.objects.filter(shipment_id__in=shipments).values_list("pk", flat=True))
    return [r[0] for r in rows], sorted(missions)


def _missions_near_exclusions(carrier_id: int) -> list[int]:
    """The carrier's missions whose active time meets one of its exclusions (exclusions are few)."""
    q = Q(pk__in=[])
    for ex_start, ex_end in carrier_exclusions(carrier_id):
        q |= (Q(started_at__lt=ex_end) | Q(started_at__isnull=True, completed_at__lt=ex_end)) & (
            Q(completed_at__isnull=True) | Q(completed_at__gt=ex_start)
        )
    return list(Mission.objects.filter(q, carrier_id=carrier_id).values_list("pk", flat=True))


SOURCES = ("missions", "exclusions", "events", "samples", "calls")


def rollup_run(*, max_seconds: float = 30.0, clock: Callable[[], float] = time.time) -> dict[str, int]:
    """Catch every source up (or stop after ``max_seconds``); rows applied per source."""
    applied = dict.fromkeys(SOURCES, 0)
    if not enabled() or RollupCursor.objects.filter(name="build").exists():
        return applied  # off, or a first build (``sla.rollup_build``) is not finished
    deadline = time.monotonic() + max_seconds
    for name in _sources_behind():
        while time.monotonic() < deadline:
            n = _source_round(name, clock)
            applied[name] += n
            if n == 0:
                break
    return applied


def _sources_behind() -> list[str]:
    """Sources with a row past their cursor (or no cursor yet), from two statements.

    A caught-up source's round would read nothing; skipping it saves its transaction and row lock (an
    evaluation catches up first, every minute for every carrier).
    """
    tables = {name: _source_table(name) for name in SOURCES}
    present = [name for name in SOURCES if tables[name] is not None]
    qn = connection.ops.quote_name
    # Table and column names come from the models' metadata, never from input.
    tops = [f"SELECT max({qn(tables[n]._meta.pk.column)}) FROM {qn(tables[n]._meta.db_table)}" for n in present]  # noqa: S608  # nosec B608
    sql = "SELECT " + ", ".join(f"({top})" for top in tops)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        top = dict(zip(present, cursor.fetchone() or (), strict=False))
    positions = dict(RollupCursor.objects.filter(name__in=present).values_list("name", "position"))
    return [n for n in present if n not in positions or (top.get(n) or 0) > positions[n]]


def rollup_lag() -> dict[str, int]:
    """Rows past each cursor (0 everywhere: the buckets hold every committed row)."""
    positions = dict(RollupCursor.objects.values_list("name", "position"))
    model = outbound_model()
    tables: dict[str, Any] = {"missions": Mission, "events": AuditEvent, "samples": TelemetrySample}
    if model is not None:
        tables["calls"] = model
    return {name: m.objects.filter(pk__gt=positions.get(name, 0)).count() for name, m in tables.items()}


def vendor() -> str:
    return connection.vendor


def carrier_rebuild(carrier_id: int) -> int:
    """Drop one carrier's buckets and build them again from its raw rows; the missions recomputed.

    For a contract whose gap or latency target changed, or after drift. Every
    cursor is held meanwhile (other rollups skip their round), so a call or a
    sample is applied either by the rebuild or after it, never by both.
    """
    with transaction.atomic():
        held = {}
        for name in SOURCES:
            _cursor_locked(name)
            held[name] = RollupCursor.objects.select_for_update().get(name=name)
        SLIBucket.objects.filter(carrier_id=carrier_id).delete()
        CoverageCell.objects.filter(carrier_id=carrier_id).delete()
        MissionFact.objects.filter(carrier_id=carrier_id).delete()
        RollupCarrier.objects.filter(carrier_id=carrier_id).delete()
        carrier_params(carrier_id)
        ids = list(Mission.objects.filter(carrier_id=carrier_id).order_by("pk").values_list("pk", flat=True))
        missions_recompute(ids)
        model = outbound_model()
        if model is not None:
            calls = held["calls"]
            applied = Q(pk__lte=calls.position) | Q(pk__in=Applied(calls.done_above).ids())
            rows = (
                model.objects.filter(applied, carrier_id=carrier_id)
                .annotate(counted=ExpressionWrapper(api_call_counted(), output_field=BooleanField()))
                .order_by("pk")
                .values("pk", "carrier_id", "started_at", "latency_ms", "ok", "counted")
            )
            batch: list[dict[str, Any]] = []
            for row in rows.iterator(chunk_size=BATCH):
                batch.append(row)
                if len(batch) >= BATCH:
                    calls_apply(batch)
                    batch = []
            calls_apply(batch)
        RollupCarrier.objects.filter(carrier_id=carrier_id).update(built_at=datetime.now(tz=UTC))
    return len(ids)
