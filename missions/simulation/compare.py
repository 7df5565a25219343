"""The ground-truth comparison: the SLA engine's figures against the ones the record implies.

For every checkpoint (each simulated midnight and the run's end), carrier, reporting window and
SLI, the engine's stored measurement of the evaluation run at that instant is set against
``truth``. Any difference in ``good``, ``total`` or ``value`` is a mismatch naming the SLI, the
window, both figures and the missions involved (for the mission SLIs, the missions whose
per-mission contribution in the engine's rollup differs from the record; otherwise the
record's failing or counted missions). Incidents the product opened that the fleet never
caused, incidents whose automation ran outside its expected window, and credits that differ
from the contract schedule are mismatches too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from missions.simulation import truth
from missions.simulation.profile import Profile
from missions.simulation.record import Record
from runbooks.models import Incident
from sla.models import CreditEntry, MissionFact, SLIMeasurement

SLIS = ("on_time", "mission_success", "telemetry_integrity", "failover_time", "mttr", "api_latency_p99",
        "api_error_rate")  # fmt: skip
MISSION_COUNT_INDEX = {"on_time": 1, "mission_success": 2}


@dataclass
class Row:
    checkpoint: str
    carrier: str
    window: str
    sli: str
    engine: dict[str, Any]
    truth: dict[str, Any]
    target: str | None
    budget_remaining_pct: str | None
    ok: bool
    mission_ids: list[int] = field(default_factory=list)


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    credits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


def _figure(good: int | None, total: int, value: Decimal | None) -> dict[str, Any]:
    return {"good": good, "total": total, "value": None if value is None else str(value)}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _fact_disagreements(record: Record, sli: str, ids: list[int]) -> list[int]:
    """Missions whose on-time / success flag in the engine's rollup facts differs from the record."""
    index = MISSION_COUNT_INDEX[sli]
    facts = {f.mission_id: f.counts for f in MissionFact.objects.filter(mission_id__in=ids)}
    differ = []
    for mission_id in ids:
        m = record.missions[mission_id]
        mine = m.outcome == "completed" and (
            m.completed_at <= m.delivery_window_end if sli == "on_time" else not m.human_intervened  # type: ignore[operator]
        )
        counts = facts.get(mission_id) or []
        theirs = bool(counts[index]) if len(counts) > index else None
        if theirs is None or theirs != mine:
            differ.append(mission_id)
    return differ


def compare_run(record: Record, profile: Profile) -> Comparison:
    result = Comparison()
    try:
        for checkpoint in record.checkpoints:
            for slug, carrier_id in record.carriers.items():
                _checkpoint(result, record, profile, checkpoint, slug, carrier_id)
        _incidents_check(result, record)
        _credits_check(result, record, profile)
    finally:
        truth.coverage_forget()
    return result


def _checkpoint(result: Comparison, record: Record, profile: Profile, at: datetime, slug: str, carrier_id: int) -> None:
    # Keyed by the window's start too: a month close at the same instant stores the closed month.
    stored: dict[tuple[str, str, datetime], SLIMeasurement] = {}
    for measured in SLIMeasurement.objects.filter(carrier_id=carrier_id, computed_at=at, window_end=at).order_by("id"):
        stored[(measured.sli, measured.window, measured.window_start)] = (
            measured  # the latest evaluation at that instant wins
        )
    for w in truth.windows_ending(at):
        expected = truth.slis(
            record,
            slug,
            w,
            failover_target_seconds=profile.failover_target_seconds,
            mttr_target_seconds=profile.mttr_target_seconds,
            as_of=at,
        )
        for sli in SLIS:
            mine = expected[sli]
            m: SLIMeasurement | None = stored.get((sli, w.name, w.start))
            engine = _figure(m.good, m.total, m.value) if m else {"missing": True}
            theirs = (engine.get("good"), engine.get("total"), engine.get("value"))
            ok = m is not None and theirs == (mine.good, mine.total, None if mine.value is None else str(mine.value))
            figure = _figure(mine.good, mine.total, mine.value)
            if sli == "api_latency_p99" and m is not None:
                # The record has no milliseconds: the p99's side of the target is compared.
                target = Decimal(profile.api_latency_target_ms)
                over = None if m.value is None else Decimal(m.value) > target
                ok = (m.good, m.total, over) == (mine.good, mine.total, mine.p99_over)
                figure["value"] = None if mine.p99_over is None else f"{'>' if mine.p99_over else '<='} {target}"
            if m is not None and not m.total and not mine.total:
                ok = m.value is None and mine.value is None  # no traffic: good may be 0 or None
            ids = mine.bad_ids or mine.ids
            if not ok and sli in MISSION_COUNT_INDEX:
                ids = _fact_disagreements(record, sli, mine.ids) or ids
            row = Row(
                checkpoint=at.isoformat(), carrier=slug, window=w.name, sli=sli, engine=engine,
                truth=figure,
                target=None if m is None or m.target is None else str(m.target),
                budget_remaining_pct=_text(m.budget_remaining_pct if m else None),
                ok=ok, mission_ids=ids if not ok else [],
            )  # fmt: skip
            result.rows.append(row)
            if not ok:
                result.mismatches.append(
                    {"what": "sli", "checkpoint": row.checkpoint, "carrier": slug, "window": w.name, "sli": sli,
                     "engine": engine, "truth": row.truth, "mission_ids": ids}
                )  # fmt: skip


def _incidents_check(result: Comparison, record: Record) -> None:
    for rec in record.incidents:
        for problem in rec.problems:
            result.mismatches.append(
                {"what": "incident", "kind": rec.kind, "carrier": rec.carrier, "incident_id": rec.incident_id,
                 "problem": problem, "mission_ids": [rec.mission_id] if rec.mission_id is not None else []}
            )  # fmt: skip
    caused = {rec.incident_id for rec in record.incidents if rec.incident_id is not None}
    opened = Incident.objects.filter(carrier_id__in=record.carriers.values()).exclude(kind="sla_breach")
    for incident in opened.order_by("id"):
        if incident.pk not in caused:
            result.mismatches.append(
                {"what": "incident", "kind": incident.kind, "incident_id": incident.pk,
                 "problem": "opened by the product for nothing the fleet did",
                 "mission_ids": [incident.mission_id] if incident.mission_id else []}
            )  # fmt: skip


def _credits_check(result: Comparison, record: Record, profile: Profile) -> None:
    """Credits the contract schedule implies for every month closed during the run, against the ledger."""
    schedule = [(Decimal(b), Decimal(c)) for b, c in profile.credit_schedule]
    min_events = int(settings.SLA_BURN_MIN_EVENTS)
    months = sorted({(c.year, c.month) for c in record.checkpoints if c.day == 1 and c > record.start})
    ledger = {
        (e.carrier_id, e.month.isoformat(), e.breach.sli): e
        for e in CreditEntry.objects.filter(carrier_id__in=record.carriers.values()).select_related("breach")
    }
    seen: set[tuple[int, str, str]] = set()
    for year, month in months:
        closed = truth.month_of(datetime(year, month, 1, tzinfo=record.start.tzinfo) - _one_day())
        key_month = closed.start.date().isoformat()
        for slug, carrier_id in record.carriers.items():
            fee = Decimal(0) if slug.endswith("-fallback") else profile.monthly_fee_usd
            figures = truth.slis(
                record,
                slug,
                closed,
                failover_target_seconds=profile.failover_target_seconds,
                mttr_target_seconds=profile.mttr_target_seconds,
                as_of=closed.end,
            )
            targets = profile.targets()
            for sli, target in targets.items():
                v = figures[sli]
                if v.total < min_events or truth.meets(sli, v, target) in (True, None):
                    continue
                attainment = truth.pct(v.good, v.total) or Decimal(0)
                due = truth.credit(attainment=attainment, schedule=schedule, fee=fee)
                entry = ledger.get((carrier_id, key_month, sli))
                seen.add((carrier_id, key_month, sli))
                row: dict[str, Any] = {
                       "month": key_month, "carrier": slug, "sli": sli, "attainment_pct": str(attainment),
                       "expected_usd": str(due[1]) if due else "0.00",
                       "issued_usd": str(entry.amount_usd) if entry else "0.00"}  # fmt: skip
                row["ok"] = row["expected_usd"] == row["issued_usd"]
                result.credits.append(row)
                if not row["ok"]:
                    result.mismatches.append({"what": "credit", **row, "mission_ids": v.bad_ids})
    for (ledger_carrier, ledger_month, ledger_sli), entry in ledger.items():
        if (ledger_carrier, ledger_month, ledger_sli) not in seen:
            result.mismatches.append(
                {"what": "credit", "month": ledger_month, "carrier_id": ledger_carrier, "sli": ledger_sli,
                 "expected_usd": "0.00", "issued_usd": str(entry.amount_usd), "mission_ids": []}
            )  # fmt: skip


def _one_day() -> Any:
    from datetime import timedelta

    return timedelta(days=1)
