"""The only code that writes SLA state: measurements, burn-rate alerts, breaches, credits, contracts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from missions.choices import MissionStatus
from missions.events import Actor, event_record
from missions.models import Carrier, Mission
from runbooks.engine import runbook_start
from runbooks.models import Incident
from runbooks.services import incident_alerts_cleared, incident_note_add, incident_open, incident_severity_change
from runbooks.transitions import INCIDENT_OPEN
from sla import rollups
from sla.bucket_reads import buckets_built_for, sli_all_buckets
from sla.choices import INCIDENT_SEVERITY_OF_ALERT, AlertSeverity, BreachStatus, SLIName, WindowName
from sla.models import (
    Breach,
    BurnRateAlert,
    BurnWindowCount,
    Contract,
    ContractExclusion,
    CreditEntry,
    SLIMeasurement,
    credit_tier_for,
)
from sla.selectors import contract_in_force, sli_all, sli_compute, sli_evidence_ids, telemetry_snapshot_ids
from sla.sli import (
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
from tms_console.domain import DomainError, transition_check
from tms_console.roles import MANAGE_SLA, perm

log = logging.getLogger(__name__)
CENTS = Decimal("0.01")
FOUR_PLACES = Decimal("0.0001")
REBUILD_REQUEST_SECONDS = 900  # a carrier's bucket rebuild is asked for at most this often


@dataclass(frozen=True)
class BurnRule:
    """One multi-window burn-rate rule: both windows must burn faster than ``threshold``."""

    severity: str
    long_window: str
    short_window: str
    threshold: Decimal


# Google SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate alerts:
# 2 % of a 30-day budget in 1 h (14.4x) or 5 % in 6 h (6x) pages; 10 % in 3 days (1x) opens a ticket.
BURN_RULES = (
    BurnRule(AlertSeverity.PAGE, "1h", "5m", Decimal("14.4")),
    BurnRule(AlertSeverity.PAGE, "6h", "30m", Decimal("6")),
    BurnRule(AlertSeverity.TICKET, "3d", "6h", Decimal("1")),
)
# Event-ratio SLIs burn budget per event; failover (a median of a few events) and MTTR (a mean) do not.
BURN_SLIS = (
    SLIName.ON_TIME,
    SLIName.MISSION_SUCCESS,
    SLIName.TELEMETRY_INTEGRITY,
    SLIName.API_LATENCY,
    SLIName.API_ERROR_RATE,
)


def burn_windows() -> tuple[str, ...]:
    """Every window a burn rule reads (long and short), in rule order, each once."""
    return tuple(dict.fromkeys(w for rule in BURN_RULES for w in (rule.long_window, rule.short_window)))


@dataclass
class Evaluation:
    """What one ``sla_evaluate`` run measured and did."""

    carrier_id: int
    now: datetime
    contract_id: int | None
    results: dict[tuple[str, str], SLIResult]
    measurements: list[SLIMeasurement] = field(default_factory=list)
    alerts_fired: list[BurnRateAlert] = field(default_factory=list)
    alerts_resolved: list[int] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)
    # The buckets were built for other contract figures: the caller queues one rebuild (sla.rebuild_carrier).
    rebuild_requested: bool = False


def _min_events() -> int:
    return int(getattr(settings, "SLA_BURN_MIN_EVENTS", 10))


def burn_rate(result: SLIResult, good_ratio_target: Decimal) -> Decimal | None:
    """How many times faster than allowed the error budget burns: error ratio / (1 - SLO)."""
    if not result.total:
        return None
    budget = Decimal(1) - good_ratio_target
    error_ratio = Decimal(result.total - result.good) / Decimal(result.total)
    if budget <= 0:
        # A 100 % objective has no budget: any error burns "infinitely" fast.
        return Decimal("Infinity") if error_ratio > 0 else Decimal(0)
    return (error_ratio / budget).quantize(FOUR_PLACES, ROUND_HALF_UP)


def budget_remaining_pct(result: SLIResult, good_ratio_target: Decimal) -> Decimal | None:
    """Share of the window's error budget left, in percent: 100 untouched, 0 spent, negative overspent."""
    if not result.total:
        return None
    allowed_bad = (Decimal(1) - good_ratio_target) * Decimal(result.total)
    bad = Decimal(result.total - result.good)
    if allowed_bad <= 0:
        return Decimal(100) if bad == 0 else Decimal(-100)
    return ((Decimal(1) - bad / allowed_bad) * 100).quantize(FOUR_PLACES, ROUND_HALF_UP)


def burn_rule_fires(long: SLIResult, short: SLIResult, target: Decimal, rule: BurnRule, min_events: int) -> bool:
    """Both windows burn strictly faster than the threshold, and the long window saw enough traffic.

    The minimum-traffic rule keeps one failure on a quiet day (1 of 2 missions
    late = 50 % error ratio) from paging anyone.
    """
    if long.total < min_events:
        return False
    long_rate, short_rate = burn_rate(long, target), burn_rate(short, target)
    if long_rate is None or short_rate is None:
        return False
    return long_rate > rule.threshold and short_rate > rule.threshold


def sla_evaluate(*, carrier_id: int, now: datetime | None = None) -> Evaluation:
    """Measure every SLI over every window, store them, fire or clear burn-rate alerts.

    On the first day of a month the previous, now closed month is also
    checked against the contract and missed objectives become proposed breaches.
    """
    now = now or timezone.now()
    carrier = Carrier.objects.get(pk=carrier_id)
    contract = contract_in_force(carrier_id, now.date())
    targets = Targets.of(contract)
    reporting = windows_at(now)
    results = sli_windows(carrier_id, [*reporting, *alert_windows_at(now)], targets)
    evaluation = Evaluation(
        carrier_id=carrier_id, now=now, contract_id=contract.pk if contract else None, results=results,
        rebuild_requested=rebuild_request(carrier_id, targets),
    )  # fmt: skip
    with transaction.atomic():
        # One evaluation of a carrier writes at a time: the carrier row is the lock (PostgreSQL);
        # SQLite serializes writers anyway, and the open-alert constraint catches what is left.
        Carrier.objects.select_for_update().filter(pk=carrier_id).values_list("pk", flat=True).first()
        rows = [
            _measurement(carrier_id, contract, targets, w, results[(sli, w.name)], now)
            for w in reporting
            for sli in SLIName
        ]
        evaluation.measurements = SLIMeasurement.objects.bulk_create(rows)
        _burn_counts_store(carrier_id, results, now)
        if contract is not None:
            _alerts_update(carrier, contract, targets, results, now, evaluation)
    if now.day == 1:
        previous = month_window(now.date() - timedelta(days=1))
        # The closed month's final measurements mark it as closed: done once, not every minute of day 1.
        closed = SLIMeasurement.objects.filter(
            carrier_id=carrier_id, window=previous.name, window_start=previous.start, window_end=previous.end
        ).exists()
        if not closed:
            evaluation.breaches = sla_month_close(carrier_id=carrier_id, month=previous.start.date(), now=now)
    return evaluation


def sli_windows(carrier_id: int, windows: list[Window], targets: Targets) -> dict[tuple[str, str], SLIResult]:
    """Every SLI over the windows: from the exact buckets (caught up first), or a recount from raw rows
    when rollups are off or the buckets were built for other contract figures (a rebuild is due)."""
    if rollups.enabled():
        rollups.rollup_run(max_seconds=float(getattr(settings, "SLA_ROLLUP_CATCH_UP_SECONDS", 5)))
        results = sli_all_buckets(carrier_id, windows, targets)
        if results is not None:
            return results
        log.warning("sla rollups: buckets of carrier %s were built for other targets; recounting", carrier_id)
    return sli_all(carrier_id, windows, targets)


def rebuild_request(carrier_id: int, targets: Targets) -> bool:
    """True when the carrier's buckets were built for other contract figures (a new contract's gap or latency
    target) and no rebuild was asked for in the last ``REBUILD_REQUEST_SECONDS``: recounts serve its
    evaluations until the rebuild is done, then the buckets do again. The daily recount repairs too."""
    from django.core.cache import cache

    if not rollups.enabled() or buckets_built_for(carrier_id, targets):
        return False
    return bool(cache.add(f"sla:rebuild-requested:{carrier_id}", 1, timeout=REBUILD_REQUEST_SECONDS))


def _burn_counts_store(carrier_id: int, results: dict[tuple[str, str], SLIResult], now: datetime) -> None:
    """Overwrite the carrier's counts per burn SLI and window: what ``/metrics`` exports to the alert rules."""
    rows = [
        BurnWindowCount(
            carrier_id=carrier_id,
            sli=sli,
            window=window,
            good=results[(sli, window)].good,
            total=results[(sli, window)].total,
            computed_at=now,
        )
        for sli in BURN_SLIS
        for window in burn_windows()
    ]
    BurnWindowCount.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["carrier", "sli", "window"],
        update_fields=["good", "total", "computed_at"],
    )


def _measurement(
    carrier_id: int, contract: Contract | None, targets: Targets, w: Window, r: SLIResult, now: datetime
) -> SLIMeasurement:
    return SLIMeasurement(
        carrier_id=carrier_id,
        contract=contract,
        sli=r.sli,
        window=w.name,
        window_start=w.start,
        window_end=w.end,
        good=r.good,
        total=r.total,
        value=r.value,
        unit=r.unit,
        target=targets.target_for(r.sli) if contract else None,
        budget_remaining_pct=budget_remaining_pct(r, targets.good_ratio_target(r.sli)) if contract else None,
        inputs=r.inputs,
        computed_at=now,
    )


def _alerts_update(
    carrier: Carrier,
    contract: Contract,
    targets: Targets,
    results: dict[tuple[str, str], SLIResult],
    now: datetime,
    evaluation: Evaluation,
) -> None:
    min_events = _min_events()
    cleared_incidents: set[int] = set()
    open_alerts = {
        (a.sli, a.severity): a
        for a in BurnRateAlert.objects.select_for_update().filter(carrier=carrier, resolved_at__isnull=True)
    }
    for sli in BURN_SLIS:
        target = targets.good_ratio_target(sli)
        for severity in (AlertSeverity.PAGE, AlertSeverity.TICKET):
            firing = [
                rule
                for rule in BURN_RULES
                if rule.severity == severity
                and burn_rule_fires(
                    results[(sli, rule.long_window)], results[(sli, rule.short_window)], target, rule, min_events
                )
            ]
            existing = open_alerts.get((sli, severity))
            if not firing:
                if existing is not None:
                    existing.resolved_at = now
                    existing.save(update_fields=["resolved_at"])
                    evaluation.alerts_resolved.append(existing.pk)
                    if existing.incident_id is not None:
                        cleared_incidents.add(existing.incident_id)
                    event_record(
                        actor=Actor.system("sla"),
                        action="sla.burn_alert_resolved",
                        subject_type="burn_rate_alert",
                        subject_id=existing.pk,
                        carrier=carrier,
                        incident_id=existing.incident_id,
                    )
                continue
            if existing is not None:
                continue  # still burning: one alert until it clears
            fired = _alert_fire(carrier, contract, sli, firing[0], results, target, now)
            if fired is not None:
                evaluation.alerts_fired.append(fired)
    for incident_id in sorted(cleared_incidents):
        _incident_follow_alerts(incident_id)


def burn_rate_label(rate: Decimal | None) -> str:
    """A burn rate as people read it: "90.9x" (one decimal), "no traffic" without one."""
    if rate is None:
        return "no traffic"
    if rate.is_infinite():
        return "unbounded (target 100 %)"
    return f"{rate.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}x"


# Missions whose silence is lost comms (a truck on the road, or held by a runbook).
MISSION_DRIVING = (MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.SUSPENDED)

# Burns that an open incident of these kinds explains (the incident pages; the burn joins it).
CAUSE_INCIDENT_KINDS: dict[SLIName, tuple[str, ...]] = {SLIName.TELEMETRY_INTEGRITY: ("lost_comms",)}


def _incident_follow_alerts(incident_id: int) -> None:
    """After alerts of an incident resolved: the incident follows what still burns (stated policy).

    A page still open keeps it critical; only tickets left make it a warning;
    nothing left marks it mitigated. It is never resolved by itself: the
    breach may still need confirming or disputing (the SLA-breach runbook),
    and on-call resolves and closes it with a review.
    """
    if not Incident.objects.filter(pk=incident_id, kind="sla_breach").exists():
        return  # a burn that joined its cause's incident: that incident follows its own runbook
    still_open = set(
        BurnRateAlert.objects.filter(incident_id=incident_id, resolved_at__isnull=True).values_list(
            "severity", flat=True
        )
    )
    actor = Actor.system("sla")
    if AlertSeverity.PAGE in still_open:
        return
    if AlertSeverity.TICKET in still_open:
        incident_severity_change(
            incident_id=incident_id,
            severity=INCIDENT_SEVERITY_OF_ALERT[AlertSeverity.TICKET],
            actor=actor,
            note="The page-level burn has stopped; a ticket-level burn-rate alert is still open.",
        )
        return
    incident_alerts_cleared(
        incident_id=incident_id,
        actor=actor,
        note="Every burn-rate alert of this incident has resolved; it stays open for review.",
    )


def _alert_fire(
    carrier: Carrier,
    contract: Contract,
    sli: str,
    rule: BurnRule,
    results: dict[tuple[str, str], SLIResult],
    target: Decimal,
    now: datetime,
) -> BurnRateAlert | None:
    """Open the alert (and page for a PAGE rule); None when a concurrent evaluation opened it first."""
    long, short = results[(sli, rule.long_window)], results[(sli, rule.short_window)]
    long_rate, short_rate = burn_rate(long, target), burn_rate(short, target)
    try:
        with transaction.atomic():
            alert = _alert_create(carrier, contract, sli, rule, long, short, long_rate, short_rate, now)
    except IntegrityError:
        return None  # the partial unique index: that alert is already open
    inhibited = ""
    if rule.severity == AlertSeverity.PAGE:
        alert.incident_id, inhibited = _incident_for_page(
            carrier, contract, sli, rule, long, long_rate, short_rate, alert, now
        )
        alert.save(update_fields=["incident_id"])
    else:
        # The same burn seen over longer windows: it belongs to the incident its page opened, if open.
        page = BurnRateAlert.objects.filter(
            carrier=carrier, sli=sli, severity=AlertSeverity.PAGE, resolved_at__isnull=True, incident_id__isnull=False
        ).first()
        if page is not None:
            alert.incident_id = page.incident_id
            alert.save(update_fields=["incident_id"])
    event_record(
        actor=Actor.system("sla"),
        action="sla.burn_alert_fired",
        subject_type="burn_rate_alert",
        subject_id=alert.pk,
        carrier=carrier,
        incident_id=alert.incident_id,
        after={
            "severity": rule.severity,
            "sli": sli,
            "long_burn_rate": long_rate,
            "short_burn_rate": short_rate,
            **({"inhibited": inhibited} if inhibited else {}),
        },
    )
    return alert


def _page_inhibited(carrier: Carrier, contract: Contract, sli: str, now: datetime) -> str:
    """Why this page must not go out (empty: it must): its cause is already being detected.

    A telemetry-integrity burn while one of the carrier's trucks is silent
    past the contract's gap threshold is lost comms, which the gap detector
    raises and pages as its own incident (possibly a moment after this
    evaluation): the alert stays on the SLA dashboard, without a second page.
    """
    if sli != SLIName.TELEMETRY_INTEGRITY:
        return ""
    silent_since = now - timedelta(seconds=contract.telemetry_gap_seconds)
    silent = (
        Mission.objects.filter(carrier=carrier, status__in=MISSION_DRIVING)
        .filter(Q(last_seen_at__lt=silent_since) | Q(last_seen_at__isnull=True, started_at__lt=silent_since))
        .select_related("vehicle")
        .order_by("pk")[:5]
    )
    names = [m.vehicle.external_id if m.vehicle else f"mission {m.pk}" for m in silent]
    if not names:
        return ""
    return f"{', '.join(names)} silent past the {contract.telemetry_gap_seconds} s gap threshold (lost comms)"


def _incident_for_page(
    carrier: Carrier,
    contract: Contract,
    sli: str,
    rule: BurnRule,
    long: SLIResult,
    long_rate: Decimal | None,
    short_rate: Decimal | None,
    alert: BurnRateAlert,
    now: datetime,
) -> tuple[int | None, str]:
    """Open (or join) the carrier's SLA-breach incident, critical, with its runbook started.

    Returns the incident and, when no page goes out, why. Inhibition (as
    Alertmanager's inhibit rules): a burn whose cause already has an open
    incident for this carrier (``CAUSE_INCIDENT_KINDS``) joins that incident as
    a note instead of paging a second time; one whose cause is about to be
    raised by its own detector (``_page_inhibited``) does not page at all.
    """
    actor = Actor.system("sla")
    cause = Incident.objects.filter(
        carrier=carrier, kind__in=CAUSE_INCIDENT_KINDS.get(SLIName(sli), ()), status__in=INCIDENT_OPEN
    ).first()
    if cause is not None:
        incident_note_add(
            incident_id=cause.pk,
            actor=actor,
            text=(
                f"{SLIName(sli).label} is burning its error budget at {burn_rate_label(long_rate)} "
                f"({rule.long_window}), a consequence of this incident: no separate page."
            ),
        )
        return cause.pk, f"joined incident {cause.pk} ({cause.kind})"
    inhibited = _page_inhibited(carrier, contract, sli, now)
    if inhibited:
        return None, inhibited
    incident, created = incident_open(
        actor=actor,
        kind="sla_breach",
        title=f"{carrier.name}: {SLIName(sli).label} burning error budget at {burn_rate_label(long_rate)}",
        severity=INCIDENT_SEVERITY_OF_ALERT[AlertSeverity.PAGE],
        carrier=carrier,
        summary=(
            f"{rule.long_window} burn rate {burn_rate_label(long_rate)} and {rule.short_window} burn rate "
            f"{burn_rate_label(short_rate)} exceed {rule.threshold:g}x "
            f"({long.good}/{long.total} good over {rule.long_window})."
        ),
        data={"burn_rate_alert_id": alert.pk, "sli": sli},
    )
    if created:
        with transaction.atomic():
            runbook_start(incident_id=incident.pk, actor=actor)
    else:
        incident_severity_change(
            incident_id=incident.pk,
            severity=INCIDENT_SEVERITY_OF_ALERT[AlertSeverity.PAGE],
            actor=actor,
            note=f"{SLIName(sli).label} burns at page level ({burn_rate_label(long_rate)}).",
        )
    return incident.pk, ""


def _alert_create(
    carrier: Carrier,
    contract: Contract,
    sli: str,
    rule: BurnRule,
    long: SLIResult,
    short: SLIResult,
    long_rate: Decimal | None,
    short_rate: Decimal | None,
    now: datetime,
) -> BurnRateAlert:
    return BurnRateAlert.objects.create(
        carrier=carrier,
        contract=contract,
        sli=sli,
        severity=rule.severity,
        long_window_seconds=int((long.end - long.start).total_seconds()),
        short_window_seconds=int((short.end - short.start).total_seconds()),
        threshold=rule.threshold,
        long_burn_rate=min(long_rate or Decimal(0), Decimal("99999999")),
        short_burn_rate=min(short_rate or Decimal(0), Decimal("99999999")),
        long_total=long.total,
        long_good=long.good,
        fired_at=now,
    )


def sla_month_close(*, carrier_id: int, month: date, now: datetime | None = None) -> list[Breach]:
    """Measure a closed calendar month, store its figures, record a proposed breach per missed SLO.

    Objectives with fewer than the minimum traffic are not judged (value
    None or too few events to be fair either way).
    """
    now = now or timezone.now()
    window = month_window(month)
    contract = contract_in_force(carrier_id, window.start.date())
    targets = Targets.of(contract)
    results = sli_all(carrier_id, [window], targets)
    with transaction.atomic():
        SLIMeasurement.objects.bulk_create(
            [_measurement(carrier_id, contract, targets, window, results[(sli, window.name)], now) for sli in SLIName]
        )
    if contract is None:
        return []
    breaches = []
    for sli in SLIName:
        result = results[(sli, window.name)]
        target = targets.target_for(sli)
        if result.total < _min_events() or sli_meets(sli, result.value, target) is not False:
            continue
        breaches.append(
            breach_record(
                carrier_id=carrier_id, contract_id=contract.pk, result=result, target=target, actor=Actor.system("sla")
            )
        )
    return breaches


def sla_recompute_after_backfill(
    *,
    carrier_id: int,
    silence_start: datetime,
    silence_end: datetime,
    cause_event_id: int,
    now: datetime | None = None,
) -> Evaluation:
    """Telemetry for a lost-comms gap arrived late: measure again every window that holds the gap.

    The rolling windows and the month so far are measured again by a full evaluation (its
    measurements become the carrier's latest, which the dashboards read; a burn-rate alert
    the gap set off clears when the windows no longer burn). A calendar month that closed
    before the upload is measured again too, and a breach still proposed for it is refreshed
    (``sla_month_close``). The audit event ``sla.telemetry_recomputed`` keeps, for each window
    holding the gap, the telemetry-integrity figure before and after, and the figure over the
    silence itself. Idempotent as a recomputation: running it again measures the same data.
    """
    now = now or timezone.now()
    carrier = Carrier.objects.get(pk=carrier_id)
    sli = SLIName.TELEMETRY_INTEGRITY
    holds_gap = [w for w in windows_at(now) if w.start < silence_end and w.end > silence_start]
    before = {w.name: _figure_stored(carrier_id, w.name, None) for w in holds_gap}
    evaluation = sla_evaluate(carrier_id=carrier_id, now=now)
    after: dict[str, dict[str, Any] | None] = {w.name: _figure(evaluation.results[(sli, w.name)]) for w in holds_gap}
    month = month_start(silence_start.date())
    while month < month_start(now.date()) and month <= silence_end.date():
        closed = month_window(month)
        key = f"month {month:%Y-%m}"
        before[key] = _figure_stored(carrier_id, WindowName.MONTH, closed.start)
        already = SLIMeasurement.objects.filter(
            carrier_id=carrier_id, window=WindowName.MONTH, window_start=closed.start, computed_at=now
        ).exists()  # sla_evaluate closes last month on the 1st, with this same ``now``
        if not already:
            sla_month_close(carrier_id=carrier_id, month=month, now=now)
        after[key] = _figure_stored(carrier_id, WindowName.MONTH, closed.start)
        month = month_next(month)
    silence = sli_compute(carrier_id, sli, silence_start, silence_end)
    with transaction.atomic():
        event_record(
            actor=Actor.system("sla"),
            action="sla.telemetry_recomputed",
            subject_type="carrier",
            subject_id=carrier_id,
            carrier=carrier,
            before=before,
            after=after,
            data={
                "sli": sli.value,
                "cause_event_id": cause_event_id,
                "silence_start": silence_start,
                "silence_end": silence_end,
                "silence_window": _figure(silence),
            },
        )
    return evaluation


def _figure(result: SLIResult) -> dict[str, Any]:
    return {
        "window_start": result.start,
        "window_end": result.end,
        "good": result.good,
        "total": result.total,
        "value": None if result.value is None else str(result.value),
    }


def _figure_stored(carrier_id: int, window: str, window_start: datetime | None) -> dict[str, Any] | None:
    """The latest stored telemetry-integrity measurement of a window (of a given start, for a month)."""
    rows = SLIMeasurement.objects.filter(carrier_id=carrier_id, sli=SLIName.TELEMETRY_INTEGRITY, window=window)
    if window_start is not None:
        rows = rows.filter(window_start=window_start)
    m = rows.order_by("-computed_at", "-id").first()
    if m is None:
        return None
    return {
        "window_start": m.window_start,
        "window_end": m.window_end,
        "good": m.good,
        "total": m.total,
        "value": None if m.value is None else str(m.value),
        "computed_at": m.computed_at,
    }


@transaction.atomic
def breach_record(*, carrier_id: int, contract_id: int, result: SLIResult, target: Decimal, actor: Actor) -> Breach:
    """Record (or refresh, while still proposed) the breach of one SLO over one billing month.

    The evidence holds the SLI inputs and the ids of the missions, telemetry
    snapshots, incidents or calls behind the figure, so a dispute argues
    over facts. A decided breach is never rewritten.
    """
    if result.value is None or result.attainment_pct is None:
        raise DomainError("A breach needs a measured value; the window had no traffic.")
    contract = Contract.objects.select_related("carrier").get(pk=contract_id, carrier_id=carrier_id)
    period_start = month_start(result.start.date())
    records = sli_evidence_ids(carrier_id, result.sli, result.start, result.end)
    records["telemetry_snapshot_ids"] = telemetry_snapshot_ids(records)
    evidence = {
        # Month close and breach verification recount the raw rows; the buckets only serve the live windows.
        "computed_by": "recount of raw rows",
        "sli": result.as_dict(),
        "window": {"start": result.start.isoformat(), "end": result.end.isoformat()},
        "records": records,
        "contract": {"id": contract.pk, "version": contract.version},
    }
    breach = (
        Breach.objects.select_for_update().filter(contract=contract, sli=result.sli, period_start=period_start).first()
    )
    if breach is not None and breach.status != BreachStatus.PROPOSED:
        return breach
    created = breach is None
    if breach is None:
        breach = Breach(carrier_id=carrier_id, contract=contract, sli=result.sli, period_start=period_start)
    breach.period_end = month_next(period_start)
    breach.measured = result.value
    breach.target = target
    breach.unit = result.unit
    breach.attainment_pct = result.attainment_pct
    breach.evidence = evidence
    breach.save()
    event_record(
        actor=actor,
        action="sla.breach_recorded" if created else "sla.breach_refreshed",
        subject_type="breach",
        subject_id=breach.pk,
        carrier=contract.carrier,
        after={"sli": result.sli, "measured": result.value, "target": target, "period_start": period_start},
    )
    return breach


BREACH_TRANSITIONS: dict[str, frozenset[str]] = {
    BreachStatus.PROPOSED: frozenset({BreachStatus.CONFIRMED, BreachStatus.DISPUTED}),
    # Arbitration may still uphold a disputed breach.
    BreachStatus.DISPUTED: frozenset({BreachStatus.CONFIRMED}),
    BreachStatus.CONFIRMED: frozenset(),
}


@transaction.atomic
def breach_decide(*, breach_id: int, decision: str, actor: Actor, reason: str = "") -> Breach:
    """Confirm or dispute a breach (MANAGE_SLA only); a confirmation writes its credit entry."""
    user = actor.user
    if user is None or not user.has_perm(perm(MANAGE_SLA)):  # type: ignore[attr-defined]
        raise PermissionDenied("Only an SLA manager can decide a breach.")
    target = {"confirm": BreachStatus.CONFIRMED, "dispute": BreachStatus.DISPUTED}.get(decision)
    if target is None:
        raise DomainError("Decide with 'confirm' or 'dispute'.", field="decision")
    if target == BreachStatus.DISPUTED and not reason.strip():
        raise DomainError("A dispute needs a reason.", field="reason")
    breach = Breach.objects.select_for_update().select_related("contract", "carrier").get(pk=breach_id)
    transition_check(machine="breach", table=BREACH_TRANSITIONS, current=breach.status, target=target)
    before = breach.status
    breach.status = target
    breach.decided_by = user  # type: ignore[assignment]
    breach.decided_at = timezone.now()
    breach.reason = reason.strip()
    breach.save(update_fields=["status", "decided_by", "decided_at", "reason", "updated_at"])
    event_record(
        actor=actor,
        action="sla.breach_decided",
        subject_type="breach",
        subject_id=breach.pk,
        carrier=breach.carrier,
        before={"status": before},
        after={"status": target},
        data={"reason": breach.reason} if breach.reason else None,
    )
    if target == BreachStatus.CONFIRMED:
        credit_entry_create(breach=breach, actor=actor)
    return breach


def credit_amount(*, monthly_fee_usd: Decimal, credit_pct: Decimal) -> Decimal:
    """fee x pct / 100, rounded half-up to the cent (Decimal arithmetic throughout)."""
    return (Decimal(monthly_fee_usd) * Decimal(credit_pct) / Decimal(100)).quantize(CENTS, rounding=ROUND_HALF_UP)


def credit_entry_create(*, breach: Breach, actor: Actor) -> CreditEntry | None:
    """Turn a confirmed breach into a ledger line, from the contract's credit tiers.

    No line when the attainment falls in no tier. Credits of one month never
    exceed that month's fee: the last line is capped at what is left.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credit_entry_create runs inside the breach decision's transaction.")
    contract = breach.contract
    tier = credit_tier_for(contract.credit_tiers(), Decimal(breach.attainment_pct))
    if tier is None or tier.credit_pct == 0:
        return None
    # Lock the carrier row so two confirmations in the same month cannot both pass the cap check.
    Carrier.objects.select_for_update().filter(pk=breach.carrier_id).first()
    fee = Decimal(contract.monthly_fee_usd)
    already = CreditEntry.objects.filter(carrier_id=breach.carrier_id, month=breach.period_start).aggregate(
        s=Sum("amount_usd")
    )["s"] or Decimal(0)
    amount = min(credit_amount(monthly_fee_usd=fee, credit_pct=tier.credit_pct), max(fee - already, Decimal(0)))
    entry = CreditEntry.objects.create(
        carrier_id=breach.carrier_id,
        month=breach.period_start,
        breach=breach,
        amount_usd=amount,
        pct=tier.credit_pct,
        tier=tier.index,
        tier_band=tier.as_dict(),
        monthly_fee_usd=fee,
    )
    event_record(
        actor=actor,
        action="sla.credit_entry_created",
        subject_type="credit_entry",
        subject_id=entry.pk,
        carrier=breach.carrier,
        after={"amount_usd": amount, "pct": tier.credit_pct, "month": breach.period_start, "breach_id": breach.pk},
    )
    return entry


@transaction.atomic
def contract_create(*, actor: Actor, carrier_id: int, **fields: Any) -> Contract:
    """Create a contract version after full validation (overlaps, ranges, credit schedule)."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if "version" not in fields:
        last = Contract.objects.filter(carrier=carrier).order_by("-version").values_list("version", flat=True).first()
        fields["version"] = (last or 0) + 1
    contract = Contract(carrier=carrier, **fields)
    contract.full_clean()
    contract.save()
    event_record(
        actor=actor,
        action="sla.contract_created",
        subject_type="contract",
        subject_id=contract.pk,
        carrier=carrier,
        after={"version": contract.version, "effective_from": contract.effective_from},
    )
    return contract


@transaction.atomic
def contract_exclusion_add(
    *, actor: Actor, contract_id: int, kind: str, reason: str, starts_at: datetime, ends_at: datetime
) -> ContractExclusion:
    contract = Contract.objects.select_related("carrier").get(pk=contract_id)
    exclusion = ContractExclusion(
        contract=contract, kind=kind, reason=reason.strip(), starts_at=starts_at, ends_at=ends_at
    )
    exclusion.full_clean()
    exclusion.save()
    event_record(
        actor=actor,
        action="sla.exclusion_added",
        subject_type="contract",
        subject_id=contract.pk,
        carrier=contract.carrier,
        after={"kind": kind, "reason": exclusion.reason, "starts_at": starts_at, "ends_at": ends_at},
    )
    return exclusion
