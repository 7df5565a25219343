"""The dispatcher's live map: simulated trucks move as telemetry arrives, a silent truck is shown stale."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions.choices import MissionStatus
from missions.models import Carrier, Mission
from missions.telemetry.ingest import ingest_events
from tests.browser.support import LIVE_TIMEOUT_MS, NetworkLog, assert_not_reloaded, login, mark_page, off_loop, screenshot
from tests.factories import CarrierFactory, MissionFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STALE_COLOUR = "#9e9e9e"  # what the map draws for a truck silent past its threshold

# The plotted trace of the map, keyed by mission id: position, colour and hover text of each truck.
READ_TRUCKS = """() => {
  const el = document.getElementById("livemap");
  if (!el || !el.data || !el.data.length) return {};
  const t = el.data[0], out = {};
  (t.customdata || []).forEach((id, i) => {
    out[id] = {lat: t.lat[i], lon: t.lon[i], color: t.marker.color[i], text: t.text[i]};
  });
  return out;
}"""


def telemetry(mission: Mission, *, at: datetime, lat: float, lon: float, speed_kph: float) -> dict[str, Any]:
    assert mission.vehicle is not None
    return {
        "schema_version": "1",
        "event_id": str(uuid.uuid4()),
        "mission_id": mission.pk,
        "vehicle_id": mission.vehicle.external_id,
        "correlation_id": str(mission.correlation_id),
        "ts": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "position": {"lat": lat, "lon": lon, "speed_kph": speed_kph, "heading_deg": 160.0, "accuracy_m": 3.0},
        "mission_state": "en_route",
        "connectivity": {"uplink": "5g", "packet_loss_pct": 0.1, "latency_ms": 38},
        "autonomy_mode": "autonomous",
    }


def send(carrier: Carrier, *events: dict[str, Any]) -> None:
    """Ingest as the telemetry endpoints do, committed from a loop-free thread (like another process)."""
    result = off_loop(ingest_events, carrier=carrier, events=list(events), source="http")
    assert result.accepted == len(events), result.as_dict()


def trucks(page: Page) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in page.evaluate(READ_TRUCKS).items()}


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
        page.wait_for_function(
            f"() => {{ const t = ({READ_TRUCKS})()[{moving.pk}]; return t && Math.abs(t.lat - {lat}) < 1e-6; }}",
            timeout=LIVE_TIMEOUT_MS,
        )
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
