"""SLI windows read from the exact buckets (``sla.rollups`` writes them; docs/decisions/0026).

A window ``[start, end)`` is cut into whole coarse buckets (hours; 60 gap
buckets for telemetry), whole fine buckets at its edges (minutes; gap buckets)
and, for the mission and API SLIs, the seconds before the first and after the
last whole minute, read from the mission facts and the calls themselves
(indexed, under a minute each). What a window costs follows the buckets it
spans, not the missions in it. Every window of an evaluation is read by one
query per tier.

Failover time and MTTR read their incidents (a few per carrier and month).
The p99 API latency is the midpoint of the latency bin holding the
nearest-rank call: within 1 % of the exact value (``rollups.LATENCY_GAMMA``);
every good/total count is exact.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from django.db.models import BooleanField, Count, ExpressionWrapper, OuterRef, Q

from missions.models import Tender
from runbooks.models import Incident
from sla.choices import SLIName
from sla.models import CoverageCell, MissionFact, RollupCarrier, SLIBucket
from sla.rollups import BLOCK, OPEN_TIER, latency_bin, latency_of_bin, outbound_model
from sla.selectors import (
    _dec,
    _failover_instant,
    _instant_in,
    _pct,
    _seconds,
    api_call_counted,
    carrier_exclusions,
    exclusions_for,
)
from sla.sli import SLIResult, Targets, Window

MINUTE, HOUR = 60, 3600


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def split(
    start: datetime, end: datetime
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[datetime, datetime]]]:
    """``[start, end)`` as hour key ranges, minute key ranges and loose second ranges (all half-open)."""
    s, e = start.timestamp(), end.timestamp()
    m0, m1 = math.ceil(s / MINUTE), math.floor(e / MINUTE)
    if m0 >= m1:
        return [], [], [(start, end)] if e > s else []
    loose = [(a, b) for a, b in ((start, _utc(m0 * MINUTE)), (_utc(m1 * MINUTE), end)) if b > a]
    h0, h1 = math.ceil(m0 / 60), math.floor(m1 / 60)
    if h0 >= h1:
        return [], [(m0, m1)], loose
    minutes = [(a, b) for a, b in ((m0, h0 * 60), (h1 * 60, m1)) if b > a]
    return [(h0, h1)], minutes, loose


class Row(NamedTuple):
    """A bucket row as read (no model instance: an evaluation reads thousands)."""

    key: int
    n1: int
    n2: int
    n3: int
    n4: int
    n5: int
    n6: int
    hist: dict[str, int]


class Series:
    """Bucket rows of one family and tier, sorted by key, with prefix sums: a key range costs two bisections."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = sorted(rows)
        self.keys = [r.key for r in self.rows]
        self.prefix = [(0, 0, 0, 0, 0, 0)]
        self.merged: dict[tuple[int, int], dict[int, int]] = {}
        for r in self.rows:
            p = self.prefix[-1]
            self.prefix.append((p[0] + r.n1, p[1] + r.n2, p[2] + r.n3, p[3] + r.n4, p[4] + r.n5, p[5] + r.n6))

    def _span(self, lo: int, hi: int) -> tuple[int, int]:
        return bisect.bisect_left(self.keys, lo), bisect.bisect_left(self.keys, hi)

    def sum(self, ranges: Sequence[tuple[int, int]]) -> list[int]:
        out = [0] * 6
        for lo, hi in ranges:
            i, j = self._span(lo, hi)
            a, b = self.prefix[i], self.prefix[j]
            for n in range(6):
                out[n] += b[n] - a[n]
        return out

    def hist(self, ranges: Sequence[tuple[int, int]], into: dict[int, int]) -> None:
        for lo, hi in ranges:
            merged = self.merged.get((lo, hi))
            if merged is None:  # windows ending at the same instant share their last minutes and hours
                merged = self.merged[(lo, hi)] = {}
                i, j = self._span(lo, hi)
                for r in self.rows[i:j]:
                    for name, n in (r.hist or {}).items():
                        merged[int(name)] = merged.get(int(name), 0) + n
            for b, count in merged.items():
                into[b] = into.get(b, 0) + count


COLUMNS = ("key", "n1", "n2", "n3", "n4", "n5", "n6")


def _rows(carrier_id: int, family: str, tier: int, ranges: Sequence[tuple[int, int]], *, hist: bool = True) -> Series:
    if not ranges:
        return Series([])
    q = Q(pk__in=[])
    for lo, hi in ranges:
        q |= Q(key__gte=lo, key__lt=hi)
    rows = SLIBucket.objects.filter(q, carrier_id=carrier_id, family=family, tier=tier)
    if hist:
        return Series([Row._make(r) for r in rows.values_list(*COLUMNS, "hist")])
    return Series([Row._make((*r, {})) for r in rows.values_list(*COLUMNS)])


def days_of(hours: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Hour ranges as whole days (day keys) and the hours left at their ends."""
    days, rest = [], []
    for h0, h1 in hours:
        d0, d1 = math.ceil(h0 / 24), math.floor(h1 / 24)
        if d0 >= d1:
            rest.append((h0, h1))
            continue
        days.append((d0, d1))
        rest += [(a, b) for a, b in ((h0, d0 * 24), (d1 * 24, h1)) if b > a]
    return days, rest


def _loose_q(field: str, ranges: Sequence[tuple[datetime, datetime]]) -> Q:
    q = Q(pk__in=[])
    for a, b in ranges:
        q |= Q(**{f"{field}__gte": a, f"{field}__lt": b})
    return q


# --- Missions --------------------------------------------------------------------------------------


def mission_windows(carrier_id: int, windows: Sequence[Window]) -> dict[str, tuple[SLIResult, SLIResult]]:
    parts = {w.name: split(w.start, w.end) for w in windows}
    hours = _rows(carrier_id, "M", 1, [r for p in parts.values() for r in p[0]])
    minutes = _rows(carrier_id, "M", 0, [r for p in parts.values() for r in p[1]])
    loose_all = [r for p in parts.values() for r in p[2]]
    facts = list(
        MissionFact.objects.filter(_loose_q("completed_at", loose_all), carrier_id=carrier_id)
        .exclude(counts=[])
        .values_list("completed_at", "counts")
    ) if loose_all else []  # fmt: skip
    exclusions = len(carrier_exclusions(carrier_id))
    out: dict[str, tuple[SLIResult, SLIResult]] = {}
    for w in windows:
        h, m, loose = parts[w.name]
        c = [a + b for a, b in zip(hours.sum(h), minutes.sum(m), strict=True)]
        for at, counts in facts:
            if at is not None and any(a <= at < b for a, b in loose):
                c = [x + y for x, y in zip(c, counts, strict=False)]
        total, on_time, success, failed, handed, cancelled = c
        inputs = {"finished_missions": total, "failed": failed, "handed_over": handed,
                  "cancelled_left_out": cancelled, "exclusions": exclusions}  # fmt: skip
        out[w.name] = (
            SLIResult(SLIName.ON_TIME, carrier_id, w.name, w.start, w.end, on_time, total, _pct(on_time, total),
                      "pct", {**inputs, "on_time": on_time}),
            SLIResult(SLIName.MISSION_SUCCESS, carrier_id, w.name, w.start, w.end, success, total,
                      _pct(success, total), "pct", {**inputs, "successful": success}),
        )  # fmt: skip
    return out


# --- Carrier API ------------------------------------------------------------------------------------


def api_windows(
    carrier_id: int, windows: Sequence[Window], *, latency_target_ms: int
) -> dict[str, tuple[SLIResult, SLIResult]]:
    model = outbound_model()
    parts = {w.name: split(w.start, w.end) for w in windows}
    hours = _rows(carrier_id, "A", 1, [r for p in parts.values() for r in p[0]], hist=False)
    minutes = _rows(carrier_id, "A", 0, [r for p in parts.values() for r in p[1]])
    hist_parts = {name: days_of(p[0]) for name, p in parts.items()}
    hist_days = _rows(carrier_id, "A", 2, [r for p in hist_parts.values() for r in p[0]])
    hist_hours = _rows(carrier_id, "A", 1, [r for p in hist_parts.values() for r in p[1]])
    loose_all = [r for p in parts.values() for r in p[2]]
    span_start, span_end = min(w.start for w in windows), max(w.end for w in windows)
    exclusions = exclusions_for(carrier_id, span_start, span_end)
    calls: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []  # calls inside an exclusion: in the buckets, taken off here
    fields = ("started_at", "latency_ms", "ok", "counted")
    counted_q = ExpressionWrapper(api_call_counted(), output_field=BooleanField())
    if loose_all and model is not None:
        calls = list(
            model.objects.filter(_loose_q("started_at", loose_all), carrier_id=carrier_id)
            .annotate(counted=counted_q)
            .values(*fields)
        )
    if exclusions and model is not None:
        left_out = list(
            model.objects.filter(_instant_in(exclusions, "started_at"), carrier_id=carrier_id,
                                 started_at__gte=span_start, started_at__lt=span_end)
            .annotate(counted=counted_q)
            .values(*fields)
        )  # fmt: skip
    out: dict[str, tuple[SLIResult, SLIResult]] = {}
    for w in windows:
        h, m, loose = parts[w.name]
        total, counted, ok, fast, _, _ = (a + b for a, b in zip(hours.sum(h), minutes.sum(m), strict=True))
        hist: dict[int, int] = {}
        hist_days.hist(hist_parts[w.name][0], hist)
        hist_hours.hist(hist_parts[w.name][1], hist)
        minutes.hist(m, hist)
        edge = [(c, 1) for c in calls if any(a <= c["started_at"] < b for a, b in loose)]
        edge += [(c, -1) for c in left_out if w.start <= c["started_at"] < w.end]
        for call, sign in edge:
            total, counted, ok = total + sign, counted + sign * int(call["counted"]), ok + sign * int(call["ok"])
            fast += sign * int(call["latency_ms"] <= latency_target_ms)
            b = latency_bin(call["latency_ms"])
            hist[b] = hist.get(b, 0) + sign
        p99: Decimal | None = None
        if total:
            rank, seen = math.ceil(Decimal("0.99") * total), 0
            for b in sorted(hist):
                seen += hist[b]
                if seen >= rank:
                    p99 = _dec(latency_of_bin(b))
                    break
        inputs = {"calls": total, "ok": ok, "errors": total - ok, "exclusions": len(exclusions)}
        error_inputs = {**inputs, "calls": counted, "errors": counted - ok, "not_counted": total - counted}
        out[w.name] = (
            SLIResult(SLIName.API_LATENCY, carrier_id, w.name, w.start, w.end, fast, total, p99, "ms",
                      {**inputs, "within_target": fast, "target_ms": latency_target_ms}),
            SLIResult(SLIName.API_ERROR_RATE, carrier_id, w.name, w.start, w.end, ok, counted,
                      _pct(counted - ok, counted), "pct", error_inputs),
        )  # fmt: skip
    return out


# --- Telemetry integrity ----------------------------------------------------------------------------


class _Tel:
    """Sums over gap-bucket ranges from coarse rows (whole blocks) and fine rows (the rest)."""

    def __init__(self, coarse: Sequence[Row], fine: Sequence[Row]) -> None:
        self.coarse = {r.key: r for r in coarse}
        self.fine = {r.key: r for r in fine}

    def _active(self, block: int, upto: int) -> int:
        """Missions active at gap bucket ``upto`` (finished ones), from the block's start count."""
        row = self.coarse.get(block)
        e = row.n2 if row else 0
        for k in range(block * BLOCK + 1, upto + 1):
            f = self.fine.get(k)
            if f is not None:
                e += f.n1 - f.n2
        return e

    def sums(self, lo: int, hi: int) -> tuple[int, int, int]:
        """(expected, covered, missions starting) over ``[lo, hi)``."""
        expected = covered = starts = 0
        k = lo
        while k < hi:
            block = k // BLOCK
            block_end = (block + 1) * BLOCK
            if k == block * BLOCK and block_end <= hi:
                row = self.coarse.get(block)
                if row is not None:
                    expected, covered, starts = expected + row.n1, covered + row.n3, starts + row.n4
                k = block_end
                continue
            stop = min(block_end, hi)
            e = self._active(block, k)
            for j in range(k, stop):
                f = self.fine.get(j)
                if j > k and f is not None:
                    e += f.n1 - f.n2
                expected += e
                if f is not None:
                    covered += f.n3
                    starts += f.n1
            k = stop
        return expected, covered, starts


def _tel_fine(lo: int, hi: int) -> list[tuple[int, int]]:
    """Fine keys a ``[lo, hi)`` read needs: its partial blocks whole, for their start count."""
    if hi <= lo:
        return []
    b0, b1 = lo // BLOCK, (hi - 1) // BLOCK
    return [(b0 * BLOCK, (b0 + 1) * BLOCK), (b1 * BLOCK, (b1 + 1) * BLOCK)]


class _Open:
    """Running missions by start gap bucket ``sk``: how many start at or after ``x``, and the sum of their ``sk``.

    Fine rows hold the starts per gap bucket (n4), coarse rows per block (n5, and n6 the offsets in the
    block), the ``OPEN_TIER`` row all of the carrier's running missions (n1). Suffix sums over the
    coarse rows read, so each question costs a block's fine rows at most.
    """

    def __init__(self, tel: _Tel, total: int) -> None:
        self.tel, self.total = tel, total
        blocks = sorted((k, r.n5, r.n5 * k * BLOCK + r.n6) for k, r in tel.coarse.items() if r.n5)
        self.keys = [k for k, _, _ in blocks]
        self.after: list[tuple[int, int]] = [(0, 0)] * (len(blocks) + 1)  # sums over blocks[i:]
        for i in range(len(blocks) - 1, -1, -1):
            n, s = self.after[i + 1]
            self.after[i] = (n + blocks[i][1], s + blocks[i][2])

    def from_(self, x: int) -> tuple[int, int]:
        block = x // BLOCK
        n, s = self.after[bisect.bisect_right(self.keys, block)]
        for k in range(x, (block + 1) * BLOCK):
            f = self.tel.fine.get(k)
            if f is not None and f.n4:
                n, s = n + f.n4, s + f.n4 * k
        return n, s

    def add(self, k0: int, k_end: int) -> tuple[int, int]:
        """(active, expected) the running missions add to ``[k0, k_end)``: those started before ``k_end``,
        each expecting every gap bucket from ``max(sk, k0)`` to ``k_end``."""
        n0, s0 = self.from_(k0)
        n1, s1 = self.from_(k_end)
        before_start = self.total - n0  # sk < k0: the whole window
        inside, inside_sum = n0 - n1, s0 - s1  # k0 <= sk < k_end
        return self.total - n1, before_start * (k_end - k0) + inside * k_end - inside_sum


def telemetry_windows(carrier_id: int, windows: Sequence[Window], *, gap_seconds: int) -> dict[str, SLIResult]:
    g = max(int(gap_seconds), 1)
    spans = {}
    for w in windows:
        k_end = math.floor(w.end.timestamp() / g)
        k0 = math.floor(w.start.timestamp() / g)
        spans[w.name] = (k0, max(k_end, k0))
    fine_ranges = []
    for lo, hi in spans.values():
        fine_ranges += _tel_fine(lo, hi)
        fine_ranges += [(hi // BLOCK * BLOCK, (hi // BLOCK + 1) * BLOCK)]  # running missions started at or after hi
    # Every block from the earliest window on (running missions may have started after a window's end).
    first_block = min(lo for lo, _ in spans.values()) // BLOCK
    coarse = SLIBucket.objects.filter(
        Q(tier=1, key__gte=first_block) | Q(tier=OPEN_TIER, key=0), carrier_id=carrier_id, family="T"
    ).values_list("tier", *COLUMNS)
    running = 0
    coarse_rows = []
    for tier, *values in coarse:
        if tier == OPEN_TIER:
            running = values[1]
        else:
            coarse_rows.append(Row._make((*values, {})))
    tel = _Tel(coarse_rows, _rows(carrier_id, "T", 0, fine_ranges, hist=False).rows)
    open_missions = _Open(tel, running)
    # Window starts inside a gap bucket: missions that ended in it before the start, cells only sampled before it.
    edges = [(w, spans[w.name][0]) for w in windows if w.start.timestamp() % g and spans[w.name][1] > spans[w.name][0]]
    # Counted in the database, one figure per window: their rows grow with the fleet on the road.
    gone: dict[str, int] = {}
    early: dict[str, int] = {}
    if edges:
        q_end = Q(pk__in=[])
        q_cell = Q(pk__in=[])
        end_counts: dict[str, Any] = {}
        cell_counts: dict[str, Any] = {}
        for n, (w, k0) in enumerate(edges):
            ended_q = Q(completed_at__gt=_utc(k0 * g), completed_at__lte=w.start)
            early_q = Q(k=k0, last_at__lt=w.start)
            q_end, q_cell = q_end | ended_q, q_cell | early_q
            end_counts[f"w{n}"] = Count("pk", filter=ended_q)
            cell_counts[f"w{n}"] = Count("pk", filter=early_q)
        ended = MissionFact.objects.filter(q_end, carrier_id=carrier_id, tel_start_k__isnull=False)
        cells = CoverageCell.objects.filter(q_cell, carrier_id=carrier_id)
        ended_n, cells_n = ended.aggregate(**end_counts), cells.aggregate(**cell_counts)
        for n, (w, _) in enumerate(edges):
            gone[w.name], early[w.name] = ended_n[f"w{n}"] or 0, cells_n[f"w{n}"] or 0
    exclusions = len(carrier_exclusions(carrier_id))
    out: dict[str, SLIResult] = {}
    for w in windows:
        k0, k_end = spans[w.name]
        expected, covered, starts = tel.sums(k0, k_end)
        active = 0
        if k_end > k0:
            active = tel._active(k0 // BLOCK, k0) + starts - tel.sums(k0, k0 + 1)[2]
            # Missions that ended in the first gap bucket before the start; cells only sampled before it.
            expected, active = expected - gone.get(w.name, 0), active - gone.get(w.name, 0)
            covered -= early.get(w.name, 0)
        running_active, running_expected = open_missions.add(k0, k_end)
        active, expected = active + running_active, expected + running_expected
        good = min(covered, expected)
        out[w.name] = SLIResult(
            SLIName.TELEMETRY_INTEGRITY, carrier_id, w.name, w.start, w.end, good, expected, _pct(good, expected),
            "pct", {"bucket_seconds": g, "active_missions": active, "expected_buckets": expected,
                    "covered_buckets": good, "exclusions": exclusions},
        )  # fmt: skip
    return out


# --- Everything ---------------------------------------------------------------------------------------


def buckets_built_for(carrier_id: int, targets: Targets) -> bool:
    """Whether the carrier's buckets were built with these targets' gap and latency figures."""
    return _built_for(RollupCarrier.objects.filter(carrier_id=carrier_id).first(), targets)


def _built_for(state: RollupCarrier | None, targets: Targets) -> bool:
    return (
        state is not None
        and state.gap_seconds == max(int(targets.telemetry_gap_seconds), 1)
        and state.latency_target_ms == targets.api_latency_p99_ms
    )


def sli_all_buckets(
    carrier_id: int, windows: Sequence[Window], targets: Targets
) -> dict[tuple[str, str], SLIResult] | None:
    """Every SLI for every window from the buckets; None when they were built for other contract figures."""
    state = RollupCarrier.objects.filter(carrier_id=carrier_id).first()
    if state is None or not _built_for(state, targets):
        return None
    results: dict[tuple[str, str], SLIResult] = {}
    for name, (on_time, success) in mission_windows(carrier_id, windows).items():
        results[(SLIName.ON_TIME, name)] = on_time
        results[(SLIName.MISSION_SUCCESS, name)] = success
    for name, (latency, errors) in api_windows(
        carrier_id, windows, latency_target_ms=targets.api_latency_p99_ms
    ).items():
        results[(SLIName.API_LATENCY, name)] = latency
        results[(SLIName.API_ERROR_RATE, name)] = errors
    for name, integrity in telemetry_windows(carrier_id, windows, gap_seconds=state.gap_seconds).items():
        results[(SLIName.TELEMETRY_INTEGRITY, name)] = integrity
    results.update(incident_windows(carrier_id, windows, targets))
    return results


# --- Incidents ----------------------------------------------------------------------------------------


def incident_windows(carrier_id: int, windows: Sequence[Window], targets: Targets) -> dict[tuple[str, str], SLIResult]:
    """Failover time and MTTR of every window from one read of the span's incidents (tens a month).

    The same definitions as ``selectors.failover_time`` and ``selectors.mttr`` (the failover instant,
    incidents inside an exclusion left out), counted per window here instead of one query per window.
    """
    start, end = min(w.start for w in windows), max(w.end for w in windows)
    exclusions = exclusions_for(carrier_id, start, end)
    first_fallback = (
        Tender.objects.filter(
            shipment_id=OuterRef("mission__shipment_id"), is_fallback=True, created_at__gte=OuterRef("triggered_at")
        )
        .order_by("created_at")
        .values("created_at")[:1]
    )
    rows = list(
        Incident.objects.filter(carrier_id=carrier_id, triggered_at__gte=start, triggered_at__lt=end)
        .exclude(kind="sla_breach")
        .exclude(_instant_in(exclusions, "triggered_at"))
        .annotate(fell_over_at=_failover_instant(first_fallback))
        .values_list("kind", "mission_id", "triggered_at", "resolved_at", "fell_over_at")
    )
    fail_target = timedelta(seconds=targets.failover_seconds)
    mttr_target = timedelta(seconds=targets.mttr_seconds)
    out: dict[tuple[str, str], SLIResult] = {}
    for w in windows:
        inside = [r for r in rows if w.start <= r[2] < w.end]
        lost = [r for r in inside if r[0] == "lost_comms" and r[1] is not None]
        took = sorted(r[4] - r[2] for r in lost if r[4] is not None)
        median: timedelta | None = None
        if took:
            n = len(took)
            median = took[n // 2] if n % 2 else (took[n // 2 - 1] + took[n // 2]) / 2
        out[(SLIName.FAILOVER_TIME, w.name)] = SLIResult(
            SLIName.FAILOVER_TIME, carrier_id, w.name, w.start, w.end, sum(1 for t in took if t <= fail_target),
            len(lost), _dec(_seconds(median)), "seconds",
            {"lost_comms_incidents": len(lost), "failed_over": len(took), "not_failed_over": len(lost) - len(took),
             "target_seconds": targets.failover_seconds},
        )  # fmt: skip
        repaired = [r[3] - r[2] for r in inside if r[3] is not None]
        mean = sum(repaired, timedelta()) / len(repaired) if repaired else None
        out[(SLIName.MTTR, w.name)] = SLIResult(
            SLIName.MTTR, carrier_id, w.name, w.start, w.end, sum(1 for t in repaired if t <= mttr_target),
            len(repaired), _dec(_seconds(mean)), "seconds",
            {"resolved_incidents": len(repaired), "unresolved_incidents": len(inside) - len(repaired),
             "target_seconds": targets.mttr_seconds},
        )  # fmt: skip
    return out
