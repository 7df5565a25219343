"""The event bus on /metrics: the relay's liveness, each source's lag, what was published and refused."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from missions.bus.selectors import bus_status


class BusCollector(Collector):
    """Read from the database at scrape time (the relay is another process); nothing when the bus is off."""

    def collect(self) -> Iterator[Metric]:
        if not settings.NATS_URL:
            return
        status = bus_status()
        yield GaugeMetricFamily(
            "tms_bus_relay_up",
            "1 while the event bus relay reports in (its heartbeat is fresh)",
            value=int(status.relay_up),
        )
        lag_rows = GaugeMetricFamily("tms_bus_lag_rows", "Rows not yet on the bus, by source", labels=["source"])
        lag_seconds = GaugeMetricFamily(
            "tms_bus_lag_seconds",
            "Events: age of the oldest unpublished one; telemetry: how long the cursor has not moved while rows wait",
            labels=["source"],
        )
        published = CounterMetricFamily(
            "tms_bus_published", "Messages the bus acknowledged, by source", labels=["source"]
        )
        for source in status.sources:
            lag_rows.add_metric([source.name], source.lag_rows)
            lag_seconds.add_metric([source.name], source.lag_seconds)
            published.add_metric([source.name], source.published)
        yield lag_rows
        yield lag_seconds
        yield published
        yield CounterMetricFamily("tms_bus_refused", "Messages the bus could not take (recorded)", value=status.refused)
