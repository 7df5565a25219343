"""The SLA engine's figures on ``/metrics``: the latest SLI values, targets, budgets and open alerts.

No data is absent, never 0: an SLI with no events in its window has no value
and no budget series (``tms_sla_sli_events`` says 0 events: "no traffic"), a
carrier without a contract has no target, and a carrier the engine never
evaluated has no series at all. A 0 on a dashboard or in an alert rule is
therefore always a measured 0. The budget is left out below
``SLA_BURN_MIN_EVENTS`` events too, where the engine judges nothing: one late
mission of one must not read as a budget overspent twenty times.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Max, OuterRef, Subquery
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from missions.models import Carrier
from sla.models import BurnRateAlert, SLIMeasurement
from sla.overview import min_events
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


def register() -> None:
    scrape_collector_register(SLICollector())
