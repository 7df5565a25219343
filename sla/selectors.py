"""SLIs computed from recorded facts, as database aggregates.

Every SLI is computed for one carrier over a half-open window ``[start, end)``
and returns an ``SLIResult``: ``good`` and ``total`` event counts, a ``value``
in its unit, and the inputs it came from. No traffic gives ``value=None``
(never 100 %): an SLO is not met by doing nothing.

Formulas (each is one or two SQL statements; no Python loop over rows):

* **on_time** (pct): missions that finished in the window (``completed_at`` in
  it, status completed / failed / handed over; cancelled missions are left
  out). good = completed with ``completed_at <= shipment.delivery_window_end``.
* **mission_success** (pct): same population. good = completed and
  ``human_intervened`` is false (a handover or failure is never a success).
* **telemetry_integrity** (pct): mission time is cut into buckets of the
  contract's telemetry gap threshold ``g`` seconds (aligned on the Unix
  epoch). total = buckets a non-cancelled mission was active in, within the
  window (active = ``[started_at, completed_at or window end)``); good =
  those buckets holding at least one telemetry sample. A vehicle sending at
  1 Hz, or at any rate faster than ``g``, scores 100 %; every silence of ``g``
  seconds costs a bucket. A mission with no samples at all scores 0, so
  missing telemetry counts against the carrier.
* **failover_time** (seconds, median): lost-comms incidents of the carrier
  triggered in the window on a mission. Time to failover = the runbook's
  recorded ``Incident.failover_at`` or, when it is not set, the first
  fallback tender (``Tender.is_fallback``) created for the incident's
  shipment at or after ``triggered_at``; minus ``triggered_at``. total = such
  incidents; good = failed over within the target. The median is taken over
  the incidents that were failed over; the others appear in the inputs.
* **mttr** (seconds, mean): incidents of the carrier (except SLA-breach
  incidents, which are ours) triggered in the window and resolved:
  mean of ``resolved_at - triggered_at``. good = resolved within the target.
* **api_latency_p99** (ms): outbound calls to the carrier started in the
  window; nearest-rank p99 (rank ``ceil(0.99 n)``) via ORDER BY + OFFSET.
  good = calls at or under the target latency.
* **api_error_rate** (pct of the calls the carrier answers for that failed).
  total = calls that count against the carrier (``api_call_counted``): a
  success, no answer (timeout, connection), 5xx, 429, or an answer that breaks
  the contract. A documented 4xx answer (the console's own mistake, a tender
  the carrier does not know) is left out, and a call the breaker refused was
  never made. good = calls with ``ok``. See docs/decisions/0018.

Exclusions (maintenance, force majeure) of the carrier's contracts remove a
mission whose active time overlaps one, and an incident or call that starts
inside one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.apps import apps
from django.db import connection, transaction
from django.db.models import (
    Avg,
    Case,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Ceil, Coalesce, Floor, Greatest, Least

from missions.choices import MissionStatus
from missions.models import Mission, TelemetrySample, Tender
from missions.models.outbound import CONTRACT_VIOLATION
from runbooks.models import Incident
from sla.choices import SLIName, WindowName
from sla.models import Contract, ContractExclusion, SLIMeasurement
from sla.sli import (  # noqa: F401  (re-exported: callers import the SLI types from here)
    ALERT_WINDOWS,
    FOUR_PLACES,
    PCT_SLIS,
    ROLLING,
    Epoch,
    SLIResult,
    Targets,
    Window,
    alert_windows_at,
    month_next,
    month_start,
    month_window,
    sli_meets,
    windows_at,
)

FINISHED = (MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.HANDED_OVER)


def evaluated_since(carrier_id: int, since: datetime, until: datetime) -> bool:
    """True when the carrier has an evaluation computed in ``[since, until]`` (one row of one SLI and window
    stands for the whole evaluation, which writes them all at once; one stamped after ``until``, by a clock
    since set back, does not count)."""
    return SLIMeasurement.objects.filter(
        carrier_id=carrier_id, sli=SLIName.ON_TIME, window=WindowName.H1, computed_at__range=(since, until)
    ).exists()


def exclusions_for(carrier_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Exclusion periods of the carrier's contracts that touch ``[start, end)`` (a handful of rows)."""
    return list(
        ContractExclusion.objects.filter(contract__carrier_id=carrier_id, starts_at__lt=end, ends_at__gt=start)
        .order_by("starts_at")
        .values_list("starts_at", "ends_at")
    )


def carrier_exclusions(carrier_id: int) -> list[tuple[datetime, datetime]]:
    """Every exclusion period of the carrier's contracts (a handful of rows).

    A mission is left out when its active time overlaps any of them, whatever
    window is measured: the same mission is never counted in one window and
    left out of another, so the buckets and a recount agree (docs/decisions/0026).
    """
    return list(
        ContractExclusion.objects.filter(contract__carrier_id=carrier_id)
        .order_by("starts_at")
        .values_list("starts_at", "ends_at")
    )


def _mission_overlaps(exclusions: Sequence[tuple[datetime, datetime]], prefix: str = "") -> Q:
    """Missions whose active time ``[started_at (or completed_at), completed_at or now]`` meets an exclusion."""
    q = Q(pk__in=[])
    for ex_start, ex_end in exclusions:
        started_before_end = Q(**{f"{prefix}started_at__lt": ex_end}) | Q(
            **{f"{prefix}started_at__isnull": True, f"{prefix}completed_at__lt": ex_end}
        )
        not_done_before_start = Q(**{f"{prefix}completed_at__isnull": True}) | Q(
            **{f"{prefix}completed_at__gt": ex_start}
        )
        q |= started_before_end & not_done_before_start
    return q


def _instant_in(exclusions: Sequence[tuple[datetime, datetime]], field_name: str) -> Q:
    q = Q(pk__in=[])
    for ex_start, ex_end in exclusions:
        q |= Q(**{f"{field_name}__gte": ex_start, f"{field_name}__lt": ex_end})
    return q


def _pct(good: int, total: int) -> Decimal | None:
    if not total:
        return None
    return (Decimal(good) * 100 / Decimal(total)).quantize(FOUR_PLACES, ROUND_HALF_UP)


def _dec(value: float | Decimal | None) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(FOUR_PLACES, ROUND_HALF_UP)


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # SQLite hands durations back as microseconds


def _span(windows: Sequence[Window]) -> tuple[datetime, datetime]:
    return min(w.start for w in windows), max(w.end for w in windows)


# --- Mission SLIs (one query for every window) -----------------------------------------------


def _band(field_name: str, windows: Sequence[Window]) -> tuple[Case, list[tuple[datetime, datetime]]]:
    """A CASE giving the index of the band between consecutive window edges that holds ``field_name``.

    Every window is a union of whole bands, so one GROUP BY band serves all the
    windows (a handful of groups are summed in Python, never the rows).
    """
    edges = sorted({w.start for w in windows} | {w.end for w in windows})
    bands = list(itertools.pairwise(edges))
    case = Case(
        *(When(**{f"{field_name}__lt": end}, then=Value(n)) for n, (_, end) in enumerate(bands)),
        default=Value(len(bands)),
        output_field=IntegerField(),
    )
    return case, bands


def _sum_bands(
    groups: Sequence[Mapping[str, Any]], bands: list[tuple[datetime, datetime]], w: Window
) -> dict[str, int]:
    inside = {n for n, (start, end) in enumerate(bands) if start >= w.start and end <= w.end}
    totals: dict[str, int] = {}
    for g in groups:
        if g["band"] in inside:
            for key, value in g.items():
                if key != "band" and isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
    return totals


def mission_slis(carrier_id: int, windows: Sequence[Window]) -> dict[str, tuple[SLIResult, SLIResult]]:
    """On-time and success rates for every window from one GROUP BY: ``{window: (on_time, success)}``."""
    span_start, span_end = _span(windows)
    exclusions = carrier_exclusions(carrier_id)
    band, bands = _band("completed_at", windows)
    on_time = Q(status=MissionStatus.COMPLETED, completed_at__lte=F("shipment__delivery_window_end"))
    success = Q(status=MissionStatus.COMPLETED, human_intervened=False)
    groups = list(
        Mission.objects.filter(
            carrier_id=carrier_id,
            status__in=[*FINISHED, MissionStatus.CANCELLED],
            completed_at__gte=span_start,
            completed_at__lt=span_end,
        )
        .exclude(_mission_overlaps(exclusions))
        .annotate(band=band)
        .values("band")
        .annotate(
            t=Count("id", filter=Q(status__in=FINISHED)),
            o=Count("id", filter=on_time),
            s=Count("id", filter=success),
            f=Count("id", filter=Q(status=MissionStatus.FAILED)),
            h=Count("id", filter=Q(status=MissionStatus.HANDED_OVER)),
            c=Count("id", filter=Q(status=MissionStatus.CANCELLED)),
        )
        .order_by()
    )
    row: dict[str, int] = {}
    cancelled: dict[str, int] = {}
    for n, w in enumerate(windows):
        sums = _sum_bands(groups, bands, w)
        for key in ("t", "o", "s", "f", "h"):
            row[f"{key}{n}"] = sums.get(key, 0)
        cancelled[f"c{n}"] = sums.get("c", 0)
    out: dict[str, tuple[SLIResult, SLIResult]] = {}
    for n, w in enumerate(windows):
        total = row[f"t{n}"]
        inputs = {
            "finished_missions": total,
            "failed": row[f"f{n}"],
            "handed_over": row[f"h{n}"],
            "cancelled_left_out": cancelled[f"c{n}"],
            "exclusions": len(exclusions),
        }
        out[w.name] = (
            SLIResult(
                SLIName.ON_TIME,
                carrier_id,
                w.name,
                w.start,
                w.end,
                row[f"o{n}"],
                total,
                _pct(row[f"o{n}"], total),
                "pct",
                {**inputs, "on_time": row[f"o{n}"]},
            ),
            SLIResult(
                SLIName.MISSION_SUCCESS,
                carrier_id,
                w.name,
                w.start,
                w.end,
                row[f"s{n}"],
                total,
                _pct(row[f"s{n}"], total),
                "pct",
                {**inputs, "successful": row[f"s{n}"]},
            ),
        )
    return out


def on_time_rate(carrier_id: int, start: datetime, end: datetime) -> SLIResult:
    return mission_slis(carrier_id, [Window("custom", start, end)])["custom"][0]


def mission_success_rate(carrier_id: int, start: datetime, end: datetime) -> SLIResult:
    return mission_slis(carrier_id, [Window("custom", start, end)])["custom"][1]


# --- Telemetry integrity ------------------------------------------------------------------------


def _active_missions(
    carrier_id: int, window: Window, exclusions: Sequence[tuple[datetime, datetime]]
) -> QuerySet[Mission]:
    return (
        Mission.objects.filter(carrier_id=carrier_id, started_at__isnull=False, started_at__lt=window.end)
        .exclude(status=MissionStatus.CANCELLED)
        .filter(Q(completed_at__isnull=True) | Q(completed_at__gt=window.start))
        .exclude(_mission_overlaps(exclusions))
        .annotate(
            clip_start=Greatest(F("started_at"), window.start, output_field=DateTimeField()),
            clip_end=Least(Coalesce(F("completed_at"), window.end), window.end, output_field=DateTimeField()),
        )
        .filter(clip_end__gt=F("clip_start"))
    )


@contextmanager
def _hash_memory() -> Iterator[None]:
    """On PostgreSQL, let the per-(mission, bucket) grouping hash in memory instead of spilling to disk.

    A 30-day window groups a few hundred thousand buckets; the default 4 MB
    ``work_mem`` makes the hash aggregate write batches to disk. ``SET LOCAL``
    ends with the (savepoint's outer) transaction, so nothing else is affected.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def telemetry_slis(carrier_id: int, windows: Sequence[Window], *, gap_seconds: int) -> dict[str, SLIResult]:
    """Telemetry integrity for every window: one statement over missions, one over samples per window end.

    A bucket counts for a window when it holds a sample inside the window; with
    the samples grouped per (mission, bucket) and the latest sample kept, that
    is ``last sample >= window start`` for every window ending at the same
    instant (all the rolling windows of an evaluation end at ``now``).

    Only whole buckets are judged: the one still in progress when a window
    ends is left to the next evaluation (a truck cannot have missed a bucket
    that has not ended; counting it paged on a truck silent for less than the
    gap threshold).
    """
    g = max(int(gap_seconds), 1)
    judged = {w.end: datetime.fromtimestamp(math.floor(w.end.timestamp() / g) * g, tz=UTC) for w in windows}
    span_start, span_end = _span(windows)
    exclusions = carrier_exclusions(carrier_id)
    missions = (
        Mission.objects.filter(carrier_id=carrier_id, started_at__isnull=False, started_at__lt=span_end)
        .exclude(status=MissionStatus.CANCELLED)
        .filter(Q(completed_at__isnull=True) | Q(completed_at__gt=span_start))
        .filter(Q(completed_at__isnull=True) | Q(completed_at__gt=F("started_at")))
        .exclude(_mission_overlaps(exclusions))
    )
    expected_aggregates: dict[str, Any] = {}
    for n, w in enumerate(windows):
        end = judged[w.end]
        clip_start = Greatest(F("started_at"), Value(w.start), output_field=DateTimeField())
        clip_end = Least(Coalesce(F("completed_at"), Value(end)), Value(end), output_field=DateTimeField())
        in_w = Q(started_at__lt=end) & (Q(completed_at__isnull=True) | Q(completed_at__gt=w.start))
        buckets = Ceil(Epoch(clip_end) / g) - Floor(Epoch(clip_start) / g)
        expected_aggregates[f"b{n}"] = Sum(buckets, filter=in_w, output_field=FloatField())
        expected_aggregates[f"m{n}"] = Count("id", filter=in_w)
    expected = missions.aggregate(**expected_aggregates)
    covered: dict[str, Any] = {}
    for end in sorted({w.end for w in windows}):
        same_end = [(n, w) for n, w in enumerate(windows) if w.end == end]
        first = min(w.start for _, w in same_end)
        per_bucket = (
            # The mission conditions are repeated on the join (not "mission IN (subquery)") so
            # PostgreSQL joins the missions once instead of probing them again for every sample.
            TelemetrySample.objects.filter(
                mission__carrier_id=carrier_id,
                mission__started_at__isnull=False,
                recorded_at__gte=first,
                recorded_at__lt=judged[end],
            )
            .exclude(mission__status=MissionStatus.CANCELLED)
            .exclude(_mission_overlaps(exclusions, prefix="mission__"))
            .filter(recorded_at__gte=F("mission__started_at"))
            .filter(Q(mission__completed_at__isnull=True) | Q(recorded_at__lt=F("mission__completed_at")))
            .annotate(bucket=Floor(Epoch(F("recorded_at")) / g))
            .values("mission_id", "bucket")
            .annotate(last_at=Max("recorded_at"))
            .order_by()
        )
        aggregates: dict[str, Any] = {}
        for n, w in same_end:
            aggregates[f"c{n}"] = Count("bucket", filter=Q(last_at__gte=w.start))
        with _hash_memory():
            covered.update(per_bucket.aggregate(**aggregates))
    out: dict[str, SLIResult] = {}
    for n, w in enumerate(windows):
        total = int(expected[f"b{n}"] or 0)
        good = min(int(covered[f"c{n}"] or 0), total)
        active = expected[f"m{n}"]
        out[w.name] = SLIResult(
            SLIName.TELEMETRY_INTEGRITY, carrier_id, w.name, w.start, w.end, good, total, _pct(good, total), "pct",
            {"bucket_seconds": g, "active_missions": active, "expected_buckets": total, "covered_buckets": good,
             "exclusions": len(exclusions)},
        )  # fmt: skip
    return out


def telemetry_integrity(carrier_id: int, window: Window, *, gap_seconds: int) -> SLIResult:
    """Share of ``gap_seconds`` buckets of active mission time that hold a telemetry sample."""
    return telemetry_slis(carrier_id, [window], gap_seconds=gap_seconds)[window.name]


# --- Incidents: time to failover, MTTR -------------------------------------------------------------


def _median(values_qs: QuerySet[Any], field_name: str, count: int) -> Any:
    """Median by ORDER BY + OFFSET (one or two rows fetched, whatever the table size)."""
    if count == 0:
        return None
    ordered = values_qs.order_by(field_name).values_list(field_name, flat=True)
    if count % 2:
        return ordered[count // 2]
    lower, upper = list(ordered[count // 2 - 1 : count // 2 + 1])
    return (lower + upper) / 2


def _failover_instant(first_fallback: QuerySet[Any, Any]) -> Any:
    """When the incident was failed over: the runbook's recorded ``Incident.failover_at`` when the
    incident model has it and it is set, else the first fallback tender's creation."""
    tender_time = Subquery(first_fallback, output_field=DateTimeField())
    if any(f.name == "failover_at" for f in Incident._meta.get_fields()):
        return Coalesce(F("failover_at"), tender_time, output_field=DateTimeField())
    return tender_time


def failover_time(carrier_id: int, window: Window, *, target_seconds: int) -> SLIResult:
    exclusions = exclusions_for(carrier_id, window.start, window.end)
    first_fallback = (
        Tender.objects.filter(
            shipment_id=OuterRef("mission__shipment_id"), is_fallback=True, created_at__gte=OuterRef("triggered_at")
        )
        .order_by("created_at")
        .values("created_at")[:1]
    )
    incidents = (
        Incident.objects.filter(
            carrier_id=carrier_id,
            kind="lost_comms",
            mission__isnull=False,
            triggered_at__gte=window.start,
            triggered_at__lt=window.end,
        )
        .exclude(_instant_in(exclusions, "triggered_at"))
        .annotate(fell_over_at=_failover_instant(first_fallback))
        .annotate(took=ExpressionWrapper(F("fell_over_at") - F("triggered_at"), output_field=DurationField()))
    )
    counts = incidents.aggregate(
        total=Count("id"),
        failed_over=Count("id", filter=Q(fell_over_at__isnull=False)),
        good=Count("id", filter=Q(took__lte=timedelta(seconds=target_seconds))),
    )
    median = _seconds(_median(incidents.filter(fell_over_at__isnull=False), "took", counts["failed_over"]))
    return SLIResult(
        SLIName.FAILOVER_TIME,
        carrier_id,
        window.name,
        window.start,
        window.end,
        counts["good"],
        counts["total"],
        _dec(median),
        "seconds",
        {
            "lost_comms_incidents": counts["total"],
            "failed_over": counts["failed_over"],
            "not_failed_over": counts["total"] - counts["failed_over"],
            "target_seconds": target_seconds,
        },
    )


def mttr(carrier_id: int, window: Window, *, target_seconds: int) -> SLIResult:
    exclusions = exclusions_for(carrier_id, window.start, window.end)
    incidents = (
        Incident.objects.filter(carrier_id=carrier_id, triggered_at__gte=window.start, triggered_at__lt=window.end)
        .exclude(kind="sla_breach")
        .exclude(_instant_in(exclusions, "triggered_at"))
        .annotate(took=ExpressionWrapper(F("resolved_at") - F("triggered_at"), output_field=DurationField()))
    )
    row = incidents.aggregate(
        total=Count("id", filter=Q(resolved_at__isnull=False)),
        unresolved=Count("id", filter=Q(resolved_at__isnull=True)),
        good=Count("id", filter=Q(took__lte=timedelta(seconds=target_seconds))),
        mean=Avg("took", filter=Q(resolved_at__isnull=False)),
    )
    return SLIResult(
        SLIName.MTTR,
        carrier_id,
        window.name,
        window.start,
        window.end,
        row["good"],
        row["total"],
        _dec(_seconds(row["mean"])),
        "seconds",
        {
            "resolved_incidents": row["total"],
            "unresolved_incidents": row["unresolved"],
            "target_seconds": target_seconds,
        },
    )


# --- Carrier API: latency p99, error rate ------------------------------------------------------------


def _outbound_model() -> Any:
    """OutboundCall is owned by tendering; looked up lazily so the SLA engine loads without it."""
    try:
        return apps.get_model("missions", "OutboundCall")
    except LookupError:
        return None


def api_call_counted() -> Q:
    """Outbound calls that count in a carrier's API error rate (docs/decisions/0018).

    Everything but a documented 4xx answer: the carrier answered, within the
    contract, that the console's request cannot be served (its own mistake, a
    token to refresh, a tender the carrier does not know). 429 is the carrier
    refusing service, and any answer outside the contract is the carrier's.
    """
    return (
        Q(ok=True)
        | Q(status_code__isnull=True)
        | Q(status_code__lt=400)
        | Q(status_code__gte=500)
        | Q(status_code=429)
        | Q(error__startswith=CONTRACT_VIOLATION)
    )


def api_slis(
    carrier_id: int, windows: Sequence[Window], *, latency_target_ms: int
) -> dict[str, tuple[SLIResult, SLIResult]]:
    """``{window: (latency_p99, error_rate)}``: one aggregate for the counts, one OFFSET per p99."""
    model = _outbound_model()
    out: dict[str, tuple[SLIResult, SLIResult]] = {}
    if model is None:
        for w in windows:
            empty = {"source": "no outbound call records"}
            out[w.name] = (
                SLIResult(SLIName.API_LATENCY, carrier_id, w.name, w.start, w.end, 0, 0, None, "ms", empty),
                SLIResult(SLIName.API_ERROR_RATE, carrier_id, w.name, w.start, w.end, 0, 0, None, "pct", empty),
            )
        return out
    span_start, span_end = _span(windows)
    exclusions = exclusions_for(carrier_id, span_start, span_end)
    calls = model.objects.filter(carrier_id=carrier_id, started_at__gte=span_start, started_at__lt=span_end).exclude(
        _instant_in(exclusions, "started_at")
    )
    aggregates: dict[str, Any] = {}
    counted = api_call_counted()
    for n, w in enumerate(windows):
        in_w = Q(started_at__gte=w.start, started_at__lt=w.end)
        aggregates[f"t{n}"] = Count("id", filter=in_w)
        aggregates[f"c{n}"] = Count("id", filter=in_w & counted)
        aggregates[f"ok{n}"] = Count("id", filter=in_w & Q(ok=True))
        aggregates[f"fast{n}"] = Count("id", filter=in_w & Q(latency_ms__lte=latency_target_ms))
    row = calls.aggregate(**aggregates)
    for n, w in enumerate(windows):
        total, ok, attributed = row[f"t{n}"], row[f"ok{n}"], row[f"c{n}"]
        p99: Decimal | None = None
        if total:
            rank = math.ceil(Decimal("0.99") * total)  # nearest-rank percentile
            latency = (
                calls.filter(started_at__gte=w.start, started_at__lt=w.end)
                .order_by("latency_ms")
                .values_list("latency_ms", flat=True)[rank - 1]
            )
            p99 = _dec(latency)
        # Latency is the carrier's whatever the status; the error rate only counts what it answers for.
        inputs = {"calls": total, "ok": ok, "errors": total - ok, "exclusions": len(exclusions)}
        error_inputs = {**inputs, "calls": attributed, "errors": attributed - ok, "not_counted": total - attributed}
        out[w.name] = (
            SLIResult(
                SLIName.API_LATENCY,
                carrier_id,
                w.name,
                w.start,
                w.end,
                row[f"fast{n}"],
                total,
                p99,
                "ms",
                {**inputs, "within_target": row[f"fast{n}"], "target_ms": latency_target_ms},
            ),
            SLIResult(
                SLIName.API_ERROR_RATE,
                carrier_id,
                w.name,
                w.start,
                w.end,
                ok,
                attributed,
                _pct(attributed - ok, attributed),
                "pct",
                error_inputs,
            ),
        )
    return out


# --- Everything at once ------------------------------------------------------------------------------


def sli_all(carrier_id: int, windows: Sequence[Window], targets: Targets) -> dict[tuple[str, str], SLIResult]:
    """Every SLI for every window: ``{(sli, window): result}``."""
    results: dict[tuple[str, str], SLIResult] = {}
    for name, (on_time, success) in mission_slis(carrier_id, windows).items():
        results[(SLIName.ON_TIME, name)] = on_time
        results[(SLIName.MISSION_SUCCESS, name)] = success
    for name, (latency, errors) in api_slis(carrier_id, windows, latency_target_ms=targets.api_latency_p99_ms).items():
        results[(SLIName.API_LATENCY, name)] = latency
        results[(SLIName.API_ERROR_RATE, name)] = errors
    for name, integrity in telemetry_slis(carrier_id, windows, gap_seconds=targets.telemetry_gap_seconds).items():
        results[(SLIName.TELEMETRY_INTEGRITY, name)] = integrity
    for w in windows:
        results[(SLIName.FAILOVER_TIME, w.name)] = failover_time(carrier_id, w, target_seconds=targets.failover_seconds)
        results[(SLIName.MTTR, w.name)] = mttr(carrier_id, w, target_seconds=targets.mttr_seconds)
    return results


def sli_compute(carrier_id: int, sli: str, start: datetime, end: datetime, targets: Targets | None = None) -> SLIResult:
    """One SLI over an arbitrary window (used by evidence and the tests)."""
    t = targets or Targets.of(contract_in_force(carrier_id, start.date()))
    w = Window("custom", start, end)
    if sli in (SLIName.ON_TIME, SLIName.MISSION_SUCCESS):
        pair = mission_slis(carrier_id, [w])["custom"]
        return pair[0] if sli == SLIName.ON_TIME else pair[1]
    if sli in (SLIName.API_LATENCY, SLIName.API_ERROR_RATE):
        api = api_slis(carrier_id, [w], latency_target_ms=t.api_latency_p99_ms)["custom"]
        return api[0] if sli == SLIName.API_LATENCY else api[1]
    if sli == SLIName.TELEMETRY_INTEGRITY:
        return telemetry_integrity(carrier_id, w, gap_seconds=t.telemetry_gap_seconds)
    if sli == SLIName.FAILOVER_TIME:
        return failover_time(carrier_id, w, target_seconds=t.failover_seconds)
    return mttr(carrier_id, w, target_seconds=t.mttr_seconds)


def sli_evidence_ids(carrier_id: int, sli: str, start: datetime, end: datetime, *, limit: int = 200) -> dict[str, Any]:
    """Ids of the records behind an SLI over a window, for a breach's evidence (capped at ``limit``)."""
    exclusions = exclusions_for(carrier_id, start, end)
    if sli in (SLIName.ON_TIME, SLIName.MISSION_SUCCESS, SLIName.TELEMETRY_INTEGRITY):
        exclusions = carrier_exclusions(carrier_id)
    if sli in (SLIName.ON_TIME, SLIName.MISSION_SUCCESS):
        finished = Mission.objects.filter(
            carrier_id=carrier_id, status__in=FINISHED, completed_at__gte=start, completed_at__lt=end
        ).exclude(_mission_overlaps(exclusions))
        good = (
            Q(status=MissionStatus.COMPLETED, completed_at__lte=F("shipment__delivery_window_end"))
            if sli == SLIName.ON_TIME
            else Q(status=MissionStatus.COMPLETED, human_intervened=False)
        )
        return {"failing_mission_ids": list(finished.exclude(good).order_by("id").values_list("id", flat=True)[:limit])}
    if sli == SLIName.TELEMETRY_INTEGRITY:
        contract = contract_in_force(carrier_id, start.date())
        g = Targets.of(contract).telemetry_gap_seconds
        window = Window("custom", start, end)
        per_mission = (
            TelemetrySample.objects.filter(
                mission__in=_active_missions(carrier_id, window, exclusions).values("pk"),
                recorded_at__gte=start,
                recorded_at__lt=end,
            )
            .values("mission_id")
            .annotate(samples=Count("id"), last_id=Max("id"), last_at=Max("recorded_at"))
            .order_by("samples")[:limit]
        )
        missions = list(
            _active_missions(carrier_id, window, exclusions).order_by("id").values_list("id", flat=True)[:limit]
        )
        return {
            "mission_ids": missions,
            "bucket_seconds": g,
            "telemetry_snapshots": [
                {
                    "mission_id": r["mission_id"],
                    "samples": r["samples"],
                    "last_sample_id": r["last_id"],
                    "last_sample_at": r["last_at"].isoformat(),
                }
                for r in per_mission
            ],
        }
    if sli in (SLIName.FAILOVER_TIME, SLIName.MTTR):
        kind_q = Q(kind="lost_comms") if sli == SLIName.FAILOVER_TIME else ~Q(kind="sla_breach")
        ids = (
            Incident.objects.filter(kind_q, carrier_id=carrier_id, triggered_at__gte=start, triggered_at__lt=end)
            .exclude(_instant_in(exclusions, "triggered_at"))
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        return {"incident_ids": list(ids)}
    model = _outbound_model()
    if model is None:
        return {}
    calls = model.objects.filter(carrier_id=carrier_id, started_at__gte=start, started_at__lt=end).exclude(
        _instant_in(exclusions, "started_at")
    )
    bad = (
        Q(ok=False) & api_call_counted()
        if sli == SLIName.API_ERROR_RATE
        else Q(latency_ms__gt=Targets.of(None).api_latency_p99_ms)
    )
    return {"failing_call_ids": list(calls.filter(bad).order_by("id").values_list("id", flat=True)[:limit])}


def telemetry_snapshot_ids(records: dict[str, Any], *, limit: int = 200) -> list[int]:
    """Ids of the frozen telemetry snapshots of the missions (or incidents' missions) named in ``records``."""
    try:
        snapshot = apps.get_model("missions", "TelemetrySnapshot")
    except LookupError:
        return []
    mission_ids = set(records.get("failing_mission_ids", [])) | set(records.get("mission_ids", []))
    incident_ids = records.get("incident_ids", [])
    q = Q(mission_id__in=mission_ids)
    if incident_ids:
        q |= Q(mission__incidents__id__in=incident_ids)
    return list(snapshot.objects.filter(q).order_by("id").values_list("id", flat=True).distinct()[:limit])


# --- Contracts (stored results are read by ``sla.reports``) ------------------------------------------


def contract_in_force(carrier_id: int, day: date) -> Contract | None:
    return (
        Contract.objects.filter(carrier_id=carrier_id, effective_from__lte=day)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=day))
        .order_by("-version")
        .first()
    )
