"""SLIs computed from the fleet's record alone, with this module's own code.

Nothing here reads the product's tables or calls the SLA engine: the inputs are the ``Record``
the fleet wrote and the contract figures of the profile. The definitions are the published
ones (``sla/selectors.py`` docstring, docs/decisions/0007 and 0026):

* on_time / mission_success: missions finished in ``[start, end)`` (completed, failed or handed
  over, by their finishing instant); on time = completed by the delivery window's end; success =
  completed without a human intervening.
* telemetry_integrity: mission time in epoch-aligned buckets of ``gap_seconds``; a started
  mission's buckets from the one holding ``max(started, start)`` up to the one holding
  ``min(completed, judged end)``, where the judged end is the window end floored to a bucket
  (the bucket in progress is not judged); good = those holding a sample sent inside the window,
  at or after the start and before the completion of the mission.
* failover_time: lost-comms incidents triggered in the window; median time to failover over
  those failed over; good = within the target.
* mttr: incidents (not SLA breaches) triggered in the window and resolved; mean time to
  resolve; good = within the target.
* api_latency_p99: the push carrier's calls started in the window (``Record.api_calls``); good =
  calls not slowed by a fault window (a slow window's delay and a blackhole's timeout are both
  over the target, a loopback answer far under it); the nearest-rank p99 (rank ``ceil(0.99 n)``)
  is over the target exactly when fewer than ``rank`` calls are good. The record has no
  milliseconds, so that side of the target is what is compared, not the figure.
* api_error_rate: the same calls but documented refusals (4xx other than 429); good = answered
  2xx; value = the failed share in percent.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from missions.simulation.record import ApiCall, IncidentRecord, MissionRecord, Record

PLACES = Decimal("0.0001")
CENTS = Decimal("0.01")
FINISHED = ("completed", "failed", "handed_over")
PCT = ("on_time", "mission_success", "telemetry_integrity")


@dataclass(frozen=True)
class TruthWindow:
    name: str
    start: datetime
    end: datetime


@dataclass
class TruthValue:
    """One SLI over one window from the record: counts, value, and the missions (or incidents) behind it."""

    good: int
    total: int
    value: Decimal | None
    bad_ids: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    # api_latency_p99 only: whether the p99 is over the target (the record knows no milliseconds).
    p99_over: bool | None = None


def windows_ending(end: datetime) -> list[TruthWindow]:
    """The engine's reporting windows ending at ``end``: rolling 1 h, 24 h, 7 d, 30 d, the month so far."""
    rolling = [("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)),
               ("30d", timedelta(days=30))]  # fmt: skip
    month_start = datetime(end.year, end.month, 1, tzinfo=UTC)
    return [*(TruthWindow(n, end - d, end) for n, d in rolling), TruthWindow("month", month_start, end)]


def month_of(first_day: datetime) -> TruthWindow:
    nxt = (first_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return TruthWindow("month", first_day.replace(day=1), nxt)


def pct(good: int, total: int) -> Decimal | None:
    if not total:
        return None
    return (Decimal(good) * 100 / Decimal(total)).quantize(PLACES, ROUND_HALF_UP)


def _carrier_missions(record: Record, carrier: str) -> list[MissionRecord]:
    return [m for m in record.missions.values() if m.carrier == carrier]


def mission_slis(record: Record, carrier: str, w: TruthWindow) -> tuple[TruthValue, TruthValue]:
    finished = [
        m
        for m in _carrier_missions(record, carrier)
        if m.outcome in FINISHED and m.completed_at is not None and w.start <= m.completed_at < w.end
    ]
    on_time = [m for m in finished if m.outcome == "completed" and m.completed_at <= m.delivery_window_end]  # type: ignore[operator]
    success = [m for m in finished if m.outcome == "completed" and not m.human_intervened]
    ids = sorted(m.mission_id for m in finished)
    return (
        TruthValue(len(on_time), len(finished), pct(len(on_time), len(finished)),
                   sorted(set(ids) - {m.mission_id for m in on_time}), ids),
        TruthValue(len(success), len(finished), pct(len(success), len(finished)),
                   sorted(set(ids) - {m.mission_id for m in success}), ids),
    )  # fmt: skip


class _Coverage:
    """A mission's samples as epoch seconds in order, and the distinct gap buckets they fall in, in order.

    A window's covered buckets are then counted with two bisections instead of a pass over every
    sample: a month's run compares each day's 30-day window against millions of samples.
    """

    def __init__(self, samples: list[datetime], g: int) -> None:
        self.size = len(samples)
        self.times = sorted(s.timestamp() for s in samples)
        self.buckets: list[int] = []
        for t in self.times:
            b = math.floor(t / g)
            if not self.buckets or self.buckets[-1] != b:
                self.buckets.append(b)

    def covered(self, lo: float, hi: float, g: int) -> int:
        """Distinct buckets holding a sample ``s`` with ``lo <= s < hi``.

        Every bucket between the first and the last sample in range holds only samples in range, and
        those two hold one each: the count is the distinct buckets from the first's to the last's.
        """
        i, j = bisect_left(self.times, lo), bisect_left(self.times, hi)
        if i >= j:
            return 0
        first, last = math.floor(self.times[i] / g), math.floor(self.times[j - 1] / g)
        return bisect_right(self.buckets, last) - bisect_left(self.buckets, first)


_COVERAGE: dict[int, tuple[MissionRecord, _Coverage]] = {}


def _coverage(m: MissionRecord, g: int) -> _Coverage:
    """The mission's index, made again when it gained samples since (the record grows while a run goes)."""
    held = _COVERAGE.get(m.mission_id)
    if held is None or held[0] is not m or held[1].size != len(m.samples):
        held = (m, _Coverage(m.samples, g))
        _COVERAGE[m.mission_id] = held
    return held[1]


def coverage_forget() -> None:
    """Drop the indexes of a finished comparison (a month's run holds millions of samples)."""
    _COVERAGE.clear()


def telemetry_integrity(record: Record, carrier: str, w: TruthWindow) -> TruthValue:
    g = record.gap_seconds
    judged_s = math.floor(w.end.timestamp() / g) * g
    start_s = w.start.timestamp()
    expected = covered = 0
    ids: list[int] = []
    short: list[int] = []
    for m in _carrier_missions(record, carrier):
        started = m.started_at.timestamp()
        done = m.completed_at.timestamp() if m.completed_at is not None else None
        if started >= judged_s or (done is not None and (done <= start_s or done <= started)):
            continue
        clip_start = max(started, start_s)
        clip_end = min(done if done is not None else judged_s, judged_s)
        if clip_end <= clip_start:
            continue
        n = math.ceil(clip_end / g) - math.floor(clip_start / g)
        # A sample counts from the window's start (and the mission's) up to the judged end (and completion).
        n_covered = _coverage(m, g).covered(clip_start, clip_end, g)
        expected += n
        covered += n_covered
        ids.append(m.mission_id)
        if n_covered < n:
            short.append(m.mission_id)
    good = min(covered, expected)
    return TruthValue(good, expected, pct(good, expected), sorted(short), sorted(ids))


def _incidents(record: Record, carrier: str, w: TruthWindow) -> list[IncidentRecord]:
    return [
        i
        for i in record.incidents
        if i.carrier == carrier and i.triggered_at is not None and w.start <= i.triggered_at < w.end
    ]


def failover_time(record: Record, carrier: str, w: TruthWindow, *, target_seconds: int, as_of: datetime) -> TruthValue:
    """``as_of``: when the engine measured; a failover after that was not known to it yet."""
    lost = [i for i in _incidents(record, carrier, w) if i.kind == "lost_comms"]
    took = sorted(
        (i.failover_at - i.triggered_at).total_seconds()  # type: ignore[operator]
        for i in lost
        if i.failover_at is not None and i.failover_at <= as_of
    )
    good = sum(1 for t in took if t <= target_seconds)
    median: Decimal | None = None
    if took:
        mid = len(took) // 2
        value = took[mid] if len(took) % 2 else (took[mid - 1] + took[mid]) / 2
        median = Decimal(str(value)).quantize(PLACES, ROUND_HALF_UP)
    ids = sorted(i.mission_id for i in lost if i.mission_id is not None)
    return TruthValue(good, len(lost), median, ids=ids)


def mttr(record: Record, carrier: str, w: TruthWindow, *, target_seconds: int, as_of: datetime) -> TruthValue:
    resolved = [i for i in _incidents(record, carrier, w) if i.resolved_at is not None and i.resolved_at <= as_of]
    took = [(i.resolved_at - i.triggered_at).total_seconds() for i in resolved]  # type: ignore[operator]
    good = sum(1 for t in took if t <= target_seconds)
    mean = Decimal(str(sum(took) / len(took))).quantize(PLACES, ROUND_HALF_UP) if took else None
    return TruthValue(good, len(took), mean, ids=sorted(i.mission_id for i in resolved if i.mission_id is not None))


def _api_calls(record: Record, carrier: str, w: TruthWindow) -> list[ApiCall]:
    """The carrier's calls started in ``[start, end)`` (the record holds them in time order)."""
    if carrier != record.api_carrier or not record.api_calls:
        return []
    times = [c.at for c in record.api_calls]
    return record.api_calls[bisect_left(times, w.start) : bisect_left(times, w.end)]


def api_slis(record: Record, carrier: str, w: TruthWindow) -> tuple[TruthValue, TruthValue]:
    calls = _api_calls(record, carrier, w)
    fast = sum(1 for c in calls if not c.slow)
    over = None if not calls else fast < math.ceil(Decimal("0.99") * len(calls))
    counted = [c for c in calls if c.counted]
    ok = sum(1 for c in counted if c.ok)
    return (
        TruthValue(fast, len(calls), None, p99_over=over),
        TruthValue(ok, len(counted), pct(len(counted) - ok, len(counted))),
    )


def slis(
    record: Record,
    carrier: str,
    w: TruthWindow,
    *,
    failover_target_seconds: int,
    mttr_target_seconds: int,
    as_of: datetime,
) -> dict[str, TruthValue]:
    """Every SLI of one carrier over one window, as the record stood at ``as_of`` (the evaluation)."""
    on_time, success = mission_slis(record, carrier, w)
    latency, errors = api_slis(record, carrier, w)
    return {
        "on_time": on_time,
        "mission_success": success,
        "telemetry_integrity": telemetry_integrity(record, carrier, w),
        "failover_time": failover_time(record, carrier, w, target_seconds=failover_target_seconds, as_of=as_of),
        "mttr": mttr(record, carrier, w, target_seconds=mttr_target_seconds, as_of=as_of),
        "api_latency_p99": latency,
        "api_error_rate": errors,
    }


def meets(sli: str, v: TruthValue, target: Decimal) -> bool | None:
    """Rates must reach the target; durations and error rates must stay under it (None: no figure)."""
    if sli == "api_latency_p99":
        return None if v.p99_over is None else not v.p99_over
    if v.value is None:
        return None
    return v.value >= target if sli in PCT else v.value <= target


def credit(
    *, attainment: Decimal, schedule: list[tuple[Decimal, Decimal]], fee: Decimal
) -> tuple[Decimal, Decimal] | None:
    """(credit pct, amount) the schedule implies for an attainment; tiers are (below_pct, credit_pct), highest first.

    A tier covers [next tier's below_pct (0 for the last), its below_pct).
    """
    for n, (below, credit_pct) in enumerate(schedule):
        floor = schedule[n + 1][0] if n + 1 < len(schedule) else Decimal(0)
        if floor <= attainment < below:
            if credit_pct == 0:
                return None
            return credit_pct, (fee * credit_pct / 100).quantize(CENTS, ROUND_HALF_UP)
    return None
