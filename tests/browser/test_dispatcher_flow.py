"""A dispatcher books autonomous capacity in the browser, sees the carrier's answer arrive live, then the truck move."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from missions.choices import OfferKind, TenderStatus
from missions.events import Actor
from missions.models import Mission, Shipment, Tender
from missions.services import offer_record
from tests.browser.fleet import send, telemetry, wait_for_truck_at
from tests.browser.support import (
    LIVE_TIMEOUT_MS,
    NetworkLog,
    assert_not_reloaded,
    datetime_local,
    login,
    mark_page,
    off_loop,
    screenshot,
)
from tests.factories import CarrierFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dispatcher_tenders_a_load_sees_the_mission_appear_live_and_the_truck_move(
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
    page.get_by_label("Pickup window start").fill(datetime_local(now + timedelta(hours=2)))
    page.get_by_label("Pickup window end").fill(datetime_local(now + timedelta(hours=4)))
    page.get_by_label("Delivery window start").fill(datetime_local(now + timedelta(hours=8)))
    page.get_by_label("Delivery window end").fill(datetime_local(now + timedelta(hours=11)))
    page.get_by_label("Weight (kg)").fill("18000")
    page.get_by_label("Target rate (USD)").fill("1450.00")
    network.expect_status(f"{live_url}/shipments/new/", 400)  # the form comes back with its errors, as a 400
    page.get_by_role("button", name="Create shipment").click()
    expect(page.get_by_text("Use a two-letter US state code, e.g. TX.")).to_be_visible()
    expect(page.get_by_label("Origin address")).to_have_value("Dallas Intermodal Terminal, Wilmer, TX")
    assert not Shipment.objects.exists()
    screenshot(page, "dispatcher-0-form-error")

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

    # The truck reports in; on the live map the dispatcher watches it move.
    page.get_by_role("link", name="Live map").click()
    expect(page).to_have_url(f"{live_url}/map/")
    start = timezone.now()
    send(carrier, telemetry(mission, at=start, lat=32.5932, lon=-96.6853, speed_kph=40.0))
    wait_for_truck_at(page, mission, 32.5932)
    send(carrier, telemetry(mission, at=start + timedelta(seconds=1), lat=32.4410, lon=-96.6410, speed_kph=92.0))
    wait_for_truck_at(page, mission, 32.4410)
    expect(page.locator("#livemap-rows tr", has_text="LSA-101")).to_contain_text("92")
    screenshot(page, "dispatcher-3-truck-on-map")

    network.assert_loopback_only()
    assert any("/ws/timeline/shipment/" in u for u in network.websockets), network.websockets
    assert any(u.endswith("/ws/map/") for u in network.websockets), network.websockets
    assert network.page_errors == []
