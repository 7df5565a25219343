"""A dispatcher books autonomous capacity in the browser and sees the carrier's answer arrive live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from missions.choices import OfferKind, TenderStatus
from missions.events import Actor
from missions.models import Mission, Shipment, Tender
from missions.services import offer_record
from tests.browser.support import (
    LIVE_TIMEOUT_MS,
    NetworkLog,
    assert_not_reloaded,
    login,
    mark_page,
    off_loop,
    screenshot,
)
from tests.factories import CarrierFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def local(dt: datetime) -> str:
    """The value a datetime-local input takes (the form's times are UTC)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def test_dispatcher_creates_tenders_and_sees_the_mission_appear_live(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    # A pull carrier (no API of its own): the tender is published at once and the
    # carrier answers later, here from this process as its partner API would.
    carrier = CarrierFactory(name="Lone Star Autonomous", slug="lone-star", operating_regions=["TX"])
    VehicleFactory(carrier=carrier, external_id="LSA-101")

    login(page, live_url, dispatcher, next_path="/shipments/")
    expect(page.get_by_role("heading", name="Shipments", exact=True)).to_be_visible()
    page.get_by_role("link", name="New shipment").first.click()
    expect(page.get_by_role("heading", name="New shipment")).to_be_visible()

    # The form refuses a bad state code and keeps what was typed.
    now = timezone.now().replace(second=0, microsecond=0)
    page.get_by_label("Origin address").fill("Dallas Intermodal Terminal, Wilmer, TX")
    page.get_by_label("Origin state").fill("ZZ")
    page.get_by_label("Origin latitude").fill("32.5932")
    page.get_by_label("Origin longitude").fill("-96.6853")
    page.get_by_label("Destination address").fill("Port Houston, Houston, TX")
    page.get_by_label("Destination state").fill("TX")
    page.get_by_label("Destination latitude").fill("29.7273")
    page.get_by_label("Destination longitude").fill("-95.2659")
    page.get_by_label("Pickup window start").fill(local(now + timedelta(hours=2)))
    page.get_by_label("Pickup window end").fill(local(now + timedelta(hours=4)))
    page.get_by_label("Delivery window start").fill(local(now + timedelta(hours=8)))
    page.get_by_label("Delivery window end").fill(local(now + timedelta(hours=11)))
    page.get_by_label("Weight (kg)").fill("18000")
    page.get_by_label("Target rate (USD)").fill("1450.00")
    page.get_by_role("button", name="Create shipment").click()
    expect(page.get_by_text("Use a two-letter US state code, e.g. TX.")).to_be_visible()
    expect(page.get_by_label("Origin address")).to_have_value("Dallas Intermodal Terminal, Wilmer, TX")
    assert not Shipment.objects.exists()

    page.get_by_label("Origin state").fill("TX")
    page.get_by_role("button", name="Create shipment").click()
    expect(page.get_by_text("created.")).to_be_visible()
    shipment = Shipment.objects.get()
    assert shipment.origin_address == "Dallas Intermodal Terminal, Wilmer, TX"
    expect(page).to_have_url(f"{live_url}/shipments/{shipment.pk}/")
    expect(page.get_by_role("heading", name=shipment.reference)).to_be_visible()

    # The shipment page ranks the carrier as eligible; the dispatcher tenders to it.
    ranking = page.locator("#ship-ranking")
    expect(ranking.get_by_role("row").filter(has_text="Lone Star Autonomous")).to_contain_text("Eligible")
    ranking.locator('select[name="carrier"]').select_option(label="Lone Star Autonomous")
    ranking.get_by_role("button", name="Tender", exact=True).click()
    expect(page.get_by_text(f"Tendered {shipment.reference} to Lone Star Autonomous.")).to_be_visible()
    tender = Tender.objects.get(shipment=shipment)
    assert tender.carrier_id == carrier.pk and tender.status == TenderStatus.SENT
    tenders = page.locator("#ship-tenders")
    expect(tenders.locator(f'[data-live-status="tender:{tender.pk}"]')).to_have_text("Sent")
    missions = page.locator("#ship-missions")
    expect(missions).to_contain_text("No mission yet")
    expect(page.locator("[data-live-indicator]")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    screenshot(page, "dispatcher-1-tendered")

    # From here on the page must change by itself: any reload would drop this tag.
    mark_page(page)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

    off_loop(
        offer_record,
        tender_id=tender.pk,
        actor=Actor.for_carrier(carrier),
        kind=OfferKind.ACCEPT,
        price_usd=tender.offered_price_usd,
        vehicle_external_id="LSA-101",
        route_id="I-45-S",
        eta=now + timedelta(hours=10),
        autonomy_mode="autonomous",
    )
    mission = Mission.objects.get(shipment=shipment)

    mission_row = missions.get_by_role("row").filter(has=page.get_by_role("link", name=f"Mission #{mission.pk}"))
    expect(mission_row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(mission_row).to_contain_text("Lone Star Autonomous")
    expect(mission_row).to_contain_text("LSA-101")
    expect(missions).not_to_contain_text("No mission yet")
    expect(tenders.locator(f'[data-live-status="tender:{tender.pk}"]')).to_have_text(
        "Accepted", timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator(f'[data-live-status="shipment:{shipment.pk}"]')).to_have_text(
        "Assigned", timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator("[data-live-timeline]")).to_contain_text("Offer accept", timeout=LIVE_TIMEOUT_MS)
    assert_not_reloaded(page)
    assert navigations == []
    screenshot(page, "dispatcher-2-mission-live")

    network.assert_loopback_only()
    assert any(u.startswith("ws://127.0.0.1:") for u in network.websockets), network.websockets
    assert network.page_errors == []
