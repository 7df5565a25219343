"""The dispatcher's live map: simulated trucks move as telemetry arrives, a silent truck is shown stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions.choices import MissionStatus
from tests.browser.fleet import READ_TRUCKS, send, telemetry, trucks, wait_for_truck_at
from tests.browser.support import (
    LIVE_TIMEOUT_MS,
    NetworkLog,
    assert_not_reloaded,
    login,
    mark_page,
    screenshot,
)
from tests.factories import CarrierFactory, MissionFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STALE_COLOUR = "#9e9e9e"  # what the map draws for a truck silent past its threshold


def test_live_map_shows_trucks_moving_and_a_silent_truck_as_stale(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    carrier = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    moving = MissionFactory(
        carrier=carrier, status=MissionStatus.EN_ROUTE, vehicle=VehicleFactory(carrier=carrier, external_id="LSA-201")
    )
    silent = MissionFactory(
        carrier=carrier, status=MissionStatus.EN_ROUTE, vehicle=VehicleFactory(carrier=carrier, external_id="LSA-202")
    )
    now = datetime.now(UTC)
    # Southbound on I-45 near Ennis, TX; the other truck last reported five minutes ago (threshold: 60 s).
    send(carrier, telemetry(moving, at=now - timedelta(seconds=2), lat=32.300, lon=-96.620, speed_kph=96.0))
    send(carrier, telemetry(silent, at=now - timedelta(minutes=5), lat=31.120, lon=-95.970, speed_kph=0.0))

    login(page, live_url, dispatcher, next_path="/map/")
    expect(page).to_have_url(f"{live_url}/map/")
    expect(page.get_by_role("heading", name="Live map")).to_be_visible()
    expect(page.locator("#livemap-status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    page.wait_for_function(f"() => Object.keys(({READ_TRUCKS})()).length === 2", timeout=LIVE_TIMEOUT_MS)
    # The map is drawn offline: plotly's own SVG with the US states from the local topojson.
    expect(page.locator("#livemap svg.main-svg").first).to_be_attached()
    page.wait_for_function("() => document.querySelectorAll('#livemap .geo path').length > 0")

    first = trucks(page)
    assert first[str(moving.pk)]["lat"] == pytest.approx(32.300)
    assert first[str(moving.pk)]["color"] != STALE_COLOUR
    assert first[str(silent.pk)]["color"] == STALE_COLOUR
    assert "STALE" in first[str(silent.pk)]["text"] and "STALE" not in first[str(moving.pk)]["text"]

    # The fleet list marks the silent truck too.
    rows = page.locator("#livemap-rows")
    expect(rows.locator("tr", has_text="LSA-202")).to_have_attribute("data-stale", "true")
    expect(rows.locator("tr", has_text="LSA-201")).to_have_attribute("data-stale", "false")
    screenshot(page, "live-map-1-initial")

    # The truck drives on: each new report moves its marker without a reload.
    mark_page(page)
    positions = [(32.300, -96.620)]
    for step, (lat, lon) in enumerate([(32.215, -96.585), (32.130, -96.550)], start=1):
        send(carrier, telemetry(moving, at=now + timedelta(seconds=step), lat=lat, lon=lon, speed_kph=97.0))
        wait_for_truck_at(page, moving, lat)
        positions.append((trucks(page)[str(moving.pk)]["lat"], trucks(page)[str(moving.pk)]["lon"]))
    assert positions == [(32.300, -96.620), (32.215, -96.585), (32.130, -96.550)]
    # The silent truck stayed where it was, and stale.
    latest = trucks(page)
    assert (latest[str(silent.pk)]["lat"], latest[str(silent.pk)]["color"]) == (31.120, STALE_COLOUR)

    # Selecting the silent truck shows its details, marked stale.
    rows.locator("tr", has_text="LSA-202").click()
    detail = page.locator("#livemap-detail")
    expect(detail).to_contain_text(f"Mission #{silent.pk}", timeout=LIVE_TIMEOUT_MS)
    expect(detail).to_contain_text("(stale)")
    assert_not_reloaded(page)
    screenshot(page, "live-map-2-moved-and-stale")

    network.assert_loopback_only()
    assert any(u.endswith("/ws/map/") for u in network.websockets), network.websockets
    assert any("/static/vendor/topojson/" in u for u in network.requests), "the map geometry was not served locally"
    assert network.page_errors == []
