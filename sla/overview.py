"""What the SLA pages show: each carrier's SLIs against target over a window, budgets left, burn state.

Reads what the engine stored (each carrier's latest evaluation), the contracts
in force and the open burn-rate alerts: a fixed handful of queries whatever
the number of carriers. The landing page, the carrier dashboard, the chart
JSON and the partner API's summary all word a measurement through
``sli_cell`` / ``cell_state``, so they never disagree.

No data is never failure: an SLI with no events in its window is "no
traffic" (no value, no colour, no budget), a carrier the engine never
evaluated says so, and a carrier without a contract is measured with no
target (nothing is judged). An SLI measured on fewer events than
``SLA_BURN_MIN_EVENTS`` shows its value but is "too few to judge", as the
engine itself treats it (no burn-rate alert, no breach at month close): one
late mission is not a red 0 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from missions.models import Carrier
from sla.choices import AlertSeverity, SLIName, WindowName
from sla.models import BurnRateAlert, Contract, SLIMeasurement
from sla.services import burn_rate_label
from sla.sli import sli_meets

# --- One measurement ------------------------------------------------------------------------------

MET = "met"
MISSED = "missed"
NO_TARGET = "no_target"  # measured, but no contract was in force: nothing to judge it against
NO_TRAFFIC = "no_traffic"  # no events in the window: no value, never 0 % and never 100 %
LOW_TRAFFIC = "low_traffic"  # measured on fewer events than the engine judges (SLA_BURN_MIN_EVENTS)
NOT_EVALUATED = "not_evaluated"  # the engine has not measured this carrier (yet)
CELL_STATES = {
    MET: "Meets its target",
    MISSED: "Misses its target",
    NO_TARGET: "Measured, no target (no contract)",
    NO_TRAFFIC: "No traffic in the window",
    LOW_TRAFFIC: "Too few events to judge",
    NOT_EVALUATED: "Not evaluated yet",
}

# What an SLI counts, to say "3 of 4 finished missions" or "no finished missions".
EVENT_NOUNS: dict[str, tuple[str, str]] = {
    SLIName.ON_TIME: ("mission", "missions"),
    SLIName.MISSION_SUCCESS: ("mission", "missions"),
    SLIName.TELEMETRY_INTEGRITY: ("interval", "intervals"),  # of the contract's telemetry gap, in mission time
    SLIName.FAILOVER_TIME: ("incident", "incidents"),
    SLIName.MTTR: ("incident", "incidents"),
    SLIName.API_LATENCY: ("call", "calls"),
    SLIName.API_ERROR_RATE: ("call", "calls"),
}
NO_TRAFFIC_REASONS: dict[str, str] = {
    SLIName.ON_TIME: "No mission finished in this window.",
    SLIName.MISSION_SUCCESS: "No mission finished in this window.",
    SLIName.TELEMETRY_INTEGRITY: "No mission was under way in this window.",
    SLIName.FAILOVER_TIME: "No lost-comms incident in this window.",
    SLIName.MTTR: "No incident was resolved in this window.",
    SLIName.API_LATENCY: "No call to the carrier's API in this window.",
    SLIName.API_ERROR_RATE: "No call to the carrier's API in this window.",
}
# The windows the engine reports, as the window picker shows them (the long label is its title).
WINDOW_SHORT = {WindowName.H1: "1 h", WindowName.H24: "24 h", WindowName.D7: "7 d", WindowName.D30: "30 d",
                WindowName.MONTH: "Month"}  # fmt: skip


def windows_menu() -> list[tuple[str, str, str]]:
    """``(value, short label, long label)`` for every reporting window."""
    return [(value, WINDOW_SHORT.get(WindowName(value), value), label) for value, label in WindowName.choices]


# Column headings where seven SLIs share a row (the full label is their title).
SLI_SHORT = {
    SLIName.ON_TIME: "On time",
    SLIName.MISSION_SUCCESS: "Success",
    SLIName.TELEMETRY_INTEGRITY: "Telemetry",
    SLIName.FAILOVER_TIME: "Failover (median)",
    SLIName.MTTR: "MTTR",
    SLIName.API_LATENCY: "API p99",
    SLIName.API_ERROR_RATE: "API errors",
}


def sli_columns() -> list[tuple[str, str, str]]:
    """``(value, short label, full label)`` for every SLI, in the engine's order."""
    return [(value, SLI_SHORT.get(SLIName(value), label), label) for value, label in SLIName.choices]


# Charts and short labels: the unit as it reads after a number.
UNIT_LABELS = {"pct": "%", "seconds": "s", "second": "s", "ms": "ms"}


def events_text(sli: str, count: int) -> str:
    singular, plural = EVENT_NOUNS.get(sli, ("event", "events"))
    return f"{count:,} {singular if count == 1 else plural}"


def _trim(number: Decimal, places: int = 1) -> str:
    """``15.0`` -> ``15``, ``15.25`` -> ``15.3`` (one decimal unless it is zero)."""
    text = f"{number.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration_text(seconds: Decimal) -> str:
    """Seconds as people read a duration: "45 s", "15 min", "2.5 h"."""
    if seconds < 120:
        return f"{_trim(seconds)} s"
    if seconds < 7200:
        return f"{_trim(seconds / 60)} min"
    return f"{_trim(seconds / 3600)} h"


def value_text(value: Decimal | None, unit: str) -> str:
    """A value in its unit: "96.50 %", "15 min", "850 ms"; "" for no value."""
    if value is None:
        return ""
    if unit == "pct":
        return f"{value:.2f} %"
    if unit in ("seconds", "second"):
        return duration_text(value)
    if unit == "ms":
        return f"{value.quantize(Decimal(1), ROUND_HALF_UP):,} ms"
    return f"{_trim(value, 2)} {unit}".strip()


def budget_text(budget_remaining_pct: Decimal | None) -> str:
    """Error budget left: "42.5 % left", "all spent", "overspent 3.2x"; "" when there is none to tell."""
    if budget_remaining_pct is None:
        return ""
    if budget_remaining_pct > 0:
        return f"{_trim(budget_remaining_pct)} % left"
    if budget_remaining_pct == 0:
        return "all spent"
    # -100 % left means twice the allowance was spent: overspent by (100 - left) / 100 times the budget.
    spent = (Decimal(100) - budget_remaining_pct) / 100
    return f"overspent {_trim(spent)}x"


def min_events() -> int:
    """The fewest events an objective is judged on (the engine's minimum-traffic rule)."""
    return int(getattr(settings, "SLA_BURN_MIN_EVENTS", 10))


def cell_state(sli: str, value: Decimal | None, target: Decimal | None, total: int) -> str:
    """How a measurement reads: no traffic, measured without a target, too few events to judge, meets or
    misses its target.

    A failover SLI whose incidents were none of them failed over has events but
    no median: with a target, that misses it (no failover is the worst failover).
    """
    if not total:
        return NO_TRAFFIC
    if target is None:
        return NO_TARGET
    if total < min_events():
        return LOW_TRAFFIC
    if value is None:
        return MISSED if sli == SLIName.FAILOVER_TIME else NO_TARGET
    return MET if sli_meets(sli, value, target) else MISSED


@dataclass(frozen=True)
class SLICell:
    """One SLI of one carrier over one window, worded for a page, a chart or the API."""

    sli: str
    unit: str
    value: Decimal | None
    target: Decimal | None
    good: int | None
    total: int
    budget_remaining_pct: Decimal | None
    state: str

    @property
    def label(self) -> str:
        return SLIName(self.sli).label

    @property
    def unit_label(self) -> str:
        return UNIT_LABELS.get(self.unit, self.unit)

    @property
    def value_text(self) -> str:
        if self.value is None and self.total and self.sli == SLIName.FAILOVER_TIME:
            return "none failed over"
        return value_text(self.value, self.unit)

    @property
    def target_text(self) -> str:
        return value_text(self.target, self.unit)

    @property
    def budget_text(self) -> str:
        # A budget spent by one event of one is arithmetic, not news: shown once the SLI is judged.
        return "" if self.state == LOW_TRAFFIC else budget_text(self.budget_remaining_pct)

    @property
    def events_text(self) -> str:
        """How many events the value stands on: "1 mission", "2,520 intervals"."""
        return events_text(self.sli, self.total)

    @property
    def good_text(self) -> str:
        """ "3 of 4 good" ("" without events)."""
        if not self.total:
            return ""
        return f"{self.good or 0:,} of {self.total:,} good"

    @property
    def reason(self) -> str:
        """Why there is no value (or no judgement); "" when the value speaks for itself."""
        if self.state == NO_TRAFFIC:
            return NO_TRAFFIC_REASONS.get(self.sli, "No events in this window.")
        if self.state == NOT_EVALUATED:
            return "The SLA engine has not evaluated this carrier yet."
        if self.value is None and self.sli == SLIName.FAILOVER_TIME:
            if self.total == 1:
                return "The lost-comms incident was not failed over."
            return f"None of the {self.total:,} lost-comms incidents was failed over."
        if self.state == NO_TARGET:
            return "No contract was in force: measured, not judged."
        if self.state == LOW_TRAFFIC:
            return (
                f"Only {events_text(self.sli, self.total)}: fewer than {min_events()} events are not judged "
                "(no burn-rate alert, no breach)."
            )
        return ""

    @property
    def state_label(self) -> str:
        return CELL_STATES[self.state]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON for the charts: numbers as floats, the wording beside them."""
        return {
            "label": self.label,
            "value": None if self.value is None else float(self.value),
            "target": None if self.target is None else float(self.target),
            "unit": self.unit,
            "good": self.good,
            "total": self.total,
            "met": None if self.state not in (MET, MISSED) else self.state == MET,
            "state": self.state,
            "reason": self.reason or None,
            "budget_remaining_pct": None if self.budget_remaining_pct is None else float(self.budget_remaining_pct),
            "value_text": self.value_text or None,
            "target_text": self.target_text or None,
            "budget_text": self.budget_text or None,
        }


def sli_cell(m: SLIMeasurement) -> SLICell:
    return SLICell(
        sli=m.sli,
        unit=m.unit,
        value=m.value,
        target=m.target,
        good=m.good,
        total=m.total,
        budget_remaining_pct=m.budget_remaining_pct if m.total else None,
        state=cell_state(m.sli, m.value, m.target, m.total),
    )


def not_evaluated_cell(sli: str) -> SLICell:
    return SLICell(sli, "", None, None, None, 0, None, NOT_EVALUATED)


def measurement_explained(sli: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A partner-API measurement (decimals as strings) with its state and, without a value, the reason."""
    value = None if entry.get("value") is None else Decimal(str(entry["value"]))
    target = None if entry.get("target") is None else Decimal(str(entry["target"]))
    cell = SLICell(
        sli=sli,
        unit=str(entry.get("unit", "")),
        value=value,
        target=target,
        good=entry.get("good"),
        total=int(entry.get("total") or 0),
        budget_remaining_pct=None,
        state=cell_state(sli, value, target, int(entry.get("total") or 0)),
    )
    return {**entry, "state": cell.state, "no_data_reason": (cell.reason or None) if value is None else None}


def summary_explained(summary: dict[str, Any]) -> dict[str, Any]:
    """A carrier's SLA summary (``carrier_sla_summary``) with every measurement's state and no-data reason."""
    slis = {
        sli: {window: measurement_explained(sli, entry) for window, entry in windows.items()}
        for sli, windows in summary.get("slis", {}).items()
    }
    return {**summary, "slis": slis}


# --- One carrier ----------------------------------------------------------------------------------

BURNING_PAGE = "page"
BURNING_TICKET = "ticket"
NOT_BURNING = "ok"
CARRIER_NO_CONTRACT = "no_contract"
BURN_STATES = {
    BURNING_PAGE: "Burning · page",
    BURNING_TICKET: "Burning · ticket",
    NOT_BURNING: "Not burning",
    NO_TRAFFIC: "No traffic",
    LOW_TRAFFIC: "Too few events",
    CARRIER_NO_CONTRACT: "No contract",
    NOT_EVALUATED: "Not evaluated yet",
}
BURN_HINTS = {
    BURNING_PAGE: "An error budget burns fast enough to page on-call (Google SRE workbook, 14.4x in 1 h or 6x in 6 h).",
    BURNING_TICKET: "An error budget burns fast enough for a ticket (1x over 3 days).",
    NOT_BURNING: "No error budget is burning faster than allowed.",
    NO_TRAFFIC: "Nothing to measure in this window: no missions, incidents or API calls.",
    LOW_TRAFFIC: "Every SLI with events has fewer than the minimum the engine judges (SLA_BURN_MIN_EVENTS).",
    CARRIER_NO_CONTRACT: "No contract is in force: SLIs are measured, with no targets and no budgets.",
    NOT_EVALUATED: "The SLA engine has not measured this carrier yet.",
}


@dataclass(frozen=True)
class AlertView:
    """An open burn-rate alert as the SLA pages word it."""

    alert: BurnRateAlert

    @property
    def sli_label(self) -> str:
        return SLIName(self.alert.sli).label

    @property
    def long_rate(self) -> str:
        return burn_rate_label(self.alert.long_burn_rate)

    @property
    def short_rate(self) -> str:
        return burn_rate_label(self.alert.short_burn_rate)

    @property
    def threshold(self) -> str:
        return burn_rate_label(self.alert.threshold)


@dataclass
class CarrierSLA:
    """One carrier's row on the SLA landing page."""

    carrier: Carrier
    contract: Contract | None
    evaluated_at: datetime | None
    cells: list[SLICell]
    alerts: list[AlertView] = field(default_factory=list)
    stale: bool = False

    @property
    def burn_state(self) -> str:
        severities = {a.alert.severity for a in self.alerts}
        if AlertSeverity.PAGE in severities:
            return BURNING_PAGE
        if AlertSeverity.TICKET in severities:
            return BURNING_TICKET
        if self.evaluated_at is None:
            return NOT_EVALUATED
        if self.contract is None:
            return CARRIER_NO_CONTRACT
        if all(c.state == NO_TRAFFIC for c in self.cells):
            return NO_TRAFFIC
        if all(c.state in (NO_TRAFFIC, LOW_TRAFFIC) for c in self.cells):
            return LOW_TRAFFIC  # nothing judged yet: neither burning nor fine
        return NOT_BURNING

    @property
    def burn_label(self) -> str:
        return BURN_STATES[self.burn_state]

    @property
    def burn_hint(self) -> str:
        return BURN_HINTS[self.burn_state]

    @property
    def lowest_budget(self) -> SLICell | None:
        """The SLI with the least error budget left in the window (None: no budget to tell)."""
        with_budget = [c for c in self.cells if c.budget_remaining_pct is not None and c.state != LOW_TRAFFIC]
        return min(with_budget, key=lambda c: c.budget_remaining_pct or Decimal(0)) if with_budget else None

    def as_json(self) -> dict[str, Any]:
        return {
            "carrier_id": self.carrier.pk,
            "carrier": self.carrier.name,
            "kind": self.carrier.kind,
            "contract_version": None if self.contract is None else self.contract.version,
            "evaluated_at": None if self.evaluated_at is None else self.evaluated_at.isoformat(),
            "burn_state": self.burn_state,
            "burn_label": self.burn_label,
            "slis": {c.sli: c.as_json() for c in self.cells},
        }


def contracts_in_force(carrier_ids: list[int], now: datetime) -> dict[int, Contract]:
    """The contract in force today for each carrier that has one (the highest version wins)."""
    today = now.date()
    found: dict[int, Contract] = {}
    for contract in (
        Contract.objects.filter(carrier_id__in=carrier_ids, effective_from__lte=today)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=today))
        .order_by("carrier_id", "-version")
    ):
        found.setdefault(contract.carrier_id, contract)
    return found


def _stale_after() -> timedelta:
    # Beat evaluates every carrier with a contract each SLA_EVALUATE_SECONDS; five missed rounds is news.
    return timedelta(seconds=max(5 * int(getattr(settings, "SLA_EVALUATE_SECONDS", 60)), 300))


def carriers_sla(window: str, *, carrier_id: int | None = None, now: datetime | None = None) -> list[CarrierSLA]:
    """Every carrier (or one), by name: its latest SLIs over ``window``, contract, open alerts, burn state."""
    now = now or timezone.now()
    last = SLIMeasurement.objects.filter(carrier_id=OuterRef("pk")).order_by("-computed_at").values("computed_at")
    carriers = Carrier.objects.annotate(evaluated_at=Subquery(last[:1])).order_by("name")
    if carrier_id is not None:
        carriers = carriers.filter(pk=carrier_id)
    rows = list(carriers)
    if not rows:
        return []
    evaluated = {c.pk: c.evaluated_at for c in rows if c.evaluated_at is not None}  # type: ignore[attr-defined]
    measured: dict[int, dict[str, SLIMeasurement]] = {}
    if evaluated:
        latest = Q(pk__in=[])
        for cid, at in evaluated.items():
            latest |= Q(carrier_id=cid, computed_at=at)
        for m in SLIMeasurement.objects.filter(latest, window=window):
            measured.setdefault(m.carrier_id, {})[m.sli] = m
    contracts = contracts_in_force([c.pk for c in rows], now)
    alerts: dict[int, list[AlertView]] = {}
    open_alerts = BurnRateAlert.objects.filter(carrier_id__in=[c.pk for c in rows], resolved_at__isnull=True)
    for alert in open_alerts.select_related("carrier").order_by("carrier_id", "severity", "sli"):
        alerts.setdefault(alert.carrier_id, []).append(AlertView(alert))
    out: list[CarrierSLA] = []
    for carrier in rows:
        at = evaluated.get(carrier.pk)
        by_sli = measured.get(carrier.pk, {})
        cells = [sli_cell(by_sli[sli]) if sli in by_sli else not_evaluated_cell(sli) for sli in SLIName.values]
        contract = contracts.get(carrier.pk)
        out.append(
            CarrierSLA(
                carrier=carrier,
                contract=contract,
                evaluated_at=at,
                cells=cells,
                alerts=alerts.get(carrier.pk, []),
                stale=at is not None and contract is not None and now - at > _stale_after(),
            )
        )
    return out


def carrier_cells(carrier_id: int, window: str) -> list[SLICell]:
    """The carrier's latest evaluation over ``window``, one cell per SLI (empty when never evaluated)."""
    rows = carriers_sla(window, carrier_id=carrier_id)
    if not rows or rows[0].evaluated_at is None:
        return []
    return rows[0].cells
