"""Builders of recorded facts (missions, samples, incidents, calls) at exact times for SLA tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from missions.choices import MissionStatus
from missions.models import Carrier, Mission, OutboundCall, TelemetrySample
from tests.factories import MissionFactory, ShipmentFactory, TenderFactory

T0 = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def at(minutes: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


def mission(
    carrier: Carrier,
    *,
    status: str = MissionStatus.COMPLETED,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    due: datetime | None = None,
    human: bool = False,
) -> Mission:
    """A mission with its shipment's delivery window ending at ``due`` (default: completion + 1 h)."""
    end = due or ((completed_at or T0) + timedelta(hours=1))
    shipment = ShipmentFactory(
        pickup_window_start=end - timedelta(hours=10),
        pickup_window_end=end - timedelta(hours=9),
        delivery_window_start=end - timedelta(hours=2),
        delivery_window_end=end,
    )
    return MissionFactory(
        shipment=shipment,
        carrier=carrier,
        status=status,
        started_at=started_at,
        completed_at=completed_at,
        human_intervened=human,
    )


def samples(m: Mission, times: list[datetime]) -> None:
    TelemetrySample.objects.bulk_create(
        [TelemetrySample(mission=m, vehicle=m.vehicle, recorded_at=t, lat=30.0, lon=-97.0) for t in times]
    )


def call(carrier: Carrier, *, when: datetime, latency_ms: float, ok: bool = True, **extra: Any) -> OutboundCall:
    fields: dict[str, Any] = {"status_code": 200 if ok else 503, **extra}
    return OutboundCall.objects.create(
        carrier=carrier,
        operation="tender_submit",
        method="POST",
        url="https://carrier.example/tenders",
        latency_ms=latency_ms,
        ok=ok,
        started_at=when,
        **fields,
    )


def fallback_tender(m: Mission, *, created_at: datetime) -> None:
    tender = TenderFactory(shipment=m.shipment, carrier=m.carrier, is_fallback=True)
    type(tender).objects.filter(pk=tender.pk).update(created_at=created_at)
