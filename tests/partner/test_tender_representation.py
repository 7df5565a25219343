"""A tender as the partner API renders it: its shipment with both places, windows and constraints, per row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from missions.choices import TenderStatus
from missions.models import Carrier, Tender
from tests.factories import ShipmentFactory, TenderFactory


def _expected_shipment(tender: Tender) -> dict[str, Any]:
    s = tender.shipment
    stamp = lambda value: value.astimezone(UTC).isoformat().replace("+00:00", "Z")  # noqa: E731
    return {
        "reference": s.reference,
        "origin": {"address": s.origin_address, "region": s.origin_region, "lat": s.origin_lat, "lon": s.origin_lon},
        "destination": {
            "address": s.destination_address,
            "region": s.destination_region,
            "lat": s.destination_lat,
            "lon": s.destination_lon,
        },
        "pickup_window_start": stamp(s.pickup_window_start),
        "pickup_window_end": stamp(s.pickup_window_end),
        "delivery_window_start": stamp(s.delivery_window_start),
        "delivery_window_end": stamp(s.delivery_window_end),
        "weight_kg": s.weight_kg,
        "hazmat": s.hazmat,
        "needs_night_operations": s.needs_night_operations,
        "max_autonomy_level": s.max_autonomy_level,
        "preferred_route": s.preferred_route,
    }


@pytest.mark.django_db
def test_each_tender_of_a_page_and_one_tender_carry_their_own_shipment(carrier_a: Carrier, api_a: APIClient) -> None:
    tenders = [
        TenderFactory(carrier=carrier_a, status=TenderStatus.SENT, shipment=ShipmentFactory(
            origin_address=f"Dock {n}, Dallas, TX", weight_kg=1000 + n, hazmat=n % 2 == 0,
            max_autonomy_level=None if n == 0 else 4, preferred_route="" if n == 0 else "I-45-S",
        ))
        for n in range(3)
    ]  # fmt: skip
    page = api_a.get("/api/v1/tenders?status=sent&page_size=25")
    assert page.status_code == 200
    rows = {row["id"]: row for row in page.json()["results"]}
    assert set(rows) == {t.pk for t in tenders}
    for tender in tenders:
        tender.refresh_from_db()
        assert rows[tender.pk]["shipment"] == _expected_shipment(tender)
        one = api_a.get(f"/api/v1/tenders/{tender.pk}")
        assert one.status_code == 200
        assert one.json() == rows[tender.pk]
        assert one.json()["offered_price_usd"] == str(tender.offered_price_usd)
        assert datetime.fromisoformat(one.json()["expires_at"]) == tender.expires_at
