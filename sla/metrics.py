"""The SLA engine's figures on ``/metrics``: the latest SLI values, targets, budgets and open alerts.

No data is absent, never 0: an SLI with no events in its window has no value
and no budget series (``tms_sla_sli_events`` says 0 events: "no traffic"), a
carrier without a contract has no target, and a carrier the engine never
evaluated has no series at all. A 0 on a dashboard or in an alert rule is
therefore always a measured 0. The budget is left out below
``SLA_BURN_MIN_EVENTS`` events too, where the engine judges nothing: one late
mission of one must not read as a budget overspent twenty times.

The burn-rate inputs (``BurnInputsCollector``) are what the Prometheus rules
of ``manage.py alert_rules`` read: the good/total counts of every burn window
the engine's last evaluation decided its alerts on, the contract's objective
as a good-event ratio and the minimum-traffic rule, so Prometheus reaches the
decision the console reached. ``CarrierSignalsCollector`` adds the breaker
state per carrier and how late the telemetry gap detector is.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from missions.models import Carrier, CarrierCircuit
from missions.telemetry.gaps import gap_candidates
from sla.models import BurnRateAlert, BurnWindowCount, SLIMeasurement
from sla.overview import contracts_in_force, min_events
from sla.services import BURN_SLIS
from sla.sli import Targets
from tms_console.metrics import scrape_collector_register


class SLICollector(Collector):
    """The latest evaluation of every carrier, read from the database at scrape time."""

    def collect(self) -> Iterator[Metric]:
        value = GaugeMetricFamily(
            "tms_sla_sli_value",
            "Latest SLI value (pct, seconds or ms by SLI); absent when the window had no events",
            labels=["carrier", "sli", "window", "unit"],
        )
        target = GaugeMetricFamily(
            "tms_sla_sli_target", "SLO target in the SLI's unit; absent without a contract", labels=["carrier", "sli"]
        )
        good = GaugeMetricFamily("tms_sla_sli_good_events", "Events that met the objective", labels=[
            "carrier", "sli", "window"])  # fmt: skip
        events = GaugeMetricFamily(
            "tms_sla_sli_events", "Events measured (0: no traffic in the window)", labels=["carrier", "sli", "window"]
        )
        budget = GaugeMetricFamily(
            "tms_sla_error_budget_remaining_ratio",
            "Error budget left (1 untouched, 0 spent, negative overspent); absent without a target or enough events",
            labels=["carrier", "sli", "window"],
        )
        alerts = GaugeMetricFamily(
            "tms_sla_burn_rate_alerts_open", "Open burn-rate alerts", labels=["carrier", "sli", "severity"]
        )
        latest = (
            SLIMeasurement.objects.filter(carrier_id=OuterRef("carrier_id"))
            .order_by()
            .values("carrier_id")
            .annotate(m=Max("computed_at"))
            .values("m")
        )
        slugs = dict(Carrier.objects.values_list("id", "slug"))
        rows = SLIMeasurement.objects.filter(computed_at=Subquery(latest)).values_list(
            "carrier_id", "sli", "window", "unit", "value", "target", "good", "total", "budget_remaining_pct"
        )
        targets_seen: set[tuple[str, str]] = set()
        least = max(min_events(), 1)
        for carrier_id, sli, window, unit, v, t, g, n, b in rows:
            carrier = slugs.get(carrier_id, str(carrier_id))
            if v is not None:
                value.add_metric([carrier, sli, window, unit], float(v))
            if t is not None and (carrier, sli) not in targets_seen:
                targets_seen.add((carrier, sli))
                target.add_metric([carrier, sli], float(t))
            if g is not None:
                good.add_metric([carrier, sli, window], float(g))
            events.add_metric([carrier, sli, window], float(n))
            if b is not None and n >= least:
                budget.add_metric([carrier, sli, window], float(b) / 100)
        for carrier_id, sli, severity in BurnRateAlert.objects.filter(resolved_at__isnull=True).values_list(
            "carrier_id", "sli", "severity"
        ):
            alerts.add_metric([slugs.get(carrier_id, str(carrier_id)), sli, severity], 1.0)
        yield from (value, target, good, events, budget, alerts)


class BurnInputsCollector(Collector):
    """What the SLO burn-rate rules read: counts per burn window, objectives, the minimum-traffic rule.

    ``tms_sla_objective_good_ratio`` exists only for a carrier with a contract
    in force (the engine raises no burn-rate alert without one), so the rules
    compute no burn rate for the others either.
    """

    def collect(self) -> Iterator[Metric]:
        labels = ["carrier", "sli", "window"]
        good = GaugeMetricFamily(
            "tms_sla_burn_good_events", "Good events per burn-rate window at the last evaluation", labels=labels
        )
        total = GaugeMetricFamily(
            "tms_sla_burn_events", "Events per burn-rate window at the last evaluation (0: no traffic)", labels=labels
        )
        evaluated = GaugeMetricFamily(
            "tms_sla_evaluated_timestamp_seconds",
            "Unix time of the last evaluation the burn-rate counts come from",
            labels=["carrier"],
        )
        objective = GaugeMetricFamily(
            "tms_sla_objective_good_ratio",
            "The SLO as a share of good events (0-1) under the contract in force; absent without one",
            labels=["carrier", "sli"],
        )
        slugs = dict(Carrier.objects.values_list("id", "slug"))
        latest: dict[str, float] = {}
        for carrier_id, sli, window, g, n, at in BurnWindowCount.objects.values_list(
            "carrier_id", "sli", "window", "good", "total", "computed_at"
        ):
            carrier = slugs.get(carrier_id, str(carrier_id))
            good.add_metric([carrier, sli, window], float(g))
            total.add_metric([carrier, sli, window], float(n))
            latest[carrier] = max(latest.get(carrier, 0.0), at.timestamp())
        for carrier, seconds in sorted(latest.items()):
            evaluated.add_metric([carrier], seconds)
        for carrier_id, contract in sorted(contracts_in_force(list(slugs), timezone.now()).items()):
            targets = Targets.of(contract)
            for sli in BURN_SLIS:
                objective.add_metric([slugs[carrier_id], sli], float(targets.good_ratio_target(sli)))
        yield from (good, total, evaluated, objective)
        yield GaugeMetricFamily(
            "tms_sla_burn_min_events",
            "Fewest events in a burn rule's long window for it to fire (SLA_BURN_MIN_EVENTS)",
            value=float(min_events()),
        )


class CarrierSignalsCollector(Collector):
    """The breaker state of our calls to each carrier, and how late the telemetry gap detector runs."""

    def collect(self) -> Iterator[Metric]:
        circuit = GaugeMetricFamily(
            "tms_carrier_circuit_state",
            "1 for the breaker state our calls to the carrier are in (closed, open, half_open)",
            labels=["carrier", "state"],
        )
        for slug, state in CarrierCircuit.objects.values_list("carrier__slug", "state").order_by("carrier__slug"):
            circuit.add_metric([slug, state], 1.0)
        yield circuit
        now = timezone.now()
        # A silence past its threshold that has not raised lost comms yet: the detector (beat every few
        # seconds, or the web process's safety ticker) should have seen it. 0 when every silence raised.
        overdue = [(now - c.last_seen_at).total_seconds() - c.gap_seconds for c in gap_candidates(now=now)]
        yield GaugeMetricFamily(
            "tms_telemetry_gap_detection_lag_seconds",
            "Seconds the oldest silence past its gap threshold has waited for lost-comms detection (0: none)",
            value=max([0.0, *overdue]),
        )


def register() -> None:
    scrape_collector_register(SLICollector())
    scrape_collector_register(BurnInputsCollector())
    scrape_collector_register(CarrierSignalsCollector())
