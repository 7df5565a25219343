"""The playbook's example end to end in the browser: Chicago -> Los Angeles, tendered to an autonomous carrier.

A dispatcher types the load, sees who can take it before saving, tenders it
to the autonomous carrier whose lanes cover the corridor; that carrier's API
(the carrier simulator, started by this test on a loopback port) accepts; the
mission appears; and on the live map the mission's planned route runs from
Chicago to Los Angeles with the truck on it once it reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from missions.choices import TenderStatus
from missions.models import Carrier, Mission, Shipment, Tender, haversine_km
from missions.routes import Polyline, route_plan
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.browser.fleet import READ_ROUTES, routes_drawn, send, telemetry, trucks, wait_for_truck_at
from tests.browser.support import LIVE_TIMEOUT_MS, NetworkLog, datetime_local, login, screenshot
from tests.factories import CarrierFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHICAGO = (41.8781, -87.6298)
LOS_ANGELES = (34.0522, -118.2437)
TRANSCON_REGIONS = ["IL", "MO", "OK", "TX", "NM", "AZ", "NV", "CA"]  # as the demo seed's Transcon Autonomous Lines


@pytest.fixture
def carrier_api() -> Iterator[CarrierSimulator]:
    """The autonomous carrier's API: the carrier simulator, accepting every tender with truck TAL-401."""
    sim = CarrierSimulator(
        SimConfig(policy={"accept": 1.0}, seed=7, vehicles=["TAL-401"], timeout_hold_seconds=3.0)
    ).start()
    try:
        yield sim
    finally:
        sim.stop()


def test_chicago_to_los_angeles_from_the_form_to_the_truck_on_its_route(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog, carrier_api: CarrierSimulator
) -> None:
    transcon: Carrier = CarrierFactory(
        name="Transcon Autonomous Lines",
        slug="transcon-autonomous",
        operating_regions=TRANSCON_REGIONS,
        api_base_url=carrier_api.url,
        api_client_id=carrier_api.state.config.client_id,
        api_client_secret=carrier_api.state.config.client_secret,
        api_timeout_seconds=5.0,
    )
    VehicleFactory(carrier=transcon, external_id="TAL-401")
    CarrierFactory(name="Lonestar Autonomous Freight", slug="lonestar", operating_regions=["TX", "LA", "GA"])

    # 1. The load, typed into the form; the eligibility panel answers before anything is saved.
    login(page, live_url, dispatcher, next_path="/shipments/new/")
    expect(page.get_by_role("heading", name="New shipment")).to_be_visible()
    now = timezone.now().replace(second=0, microsecond=0)
    page.get_by_label("Origin address").fill("Chicago, IL")
    page.get_by_label("Origin state").fill("IL")
    page.get_by_label("Origin latitude").fill(str(CHICAGO[0]))
    page.get_by_label("Origin longitude").fill(str(CHICAGO[1]))
    page.get_by_label("Destination address").fill("Los Angeles, CA")
    page.get_by_label("Destination state").fill("CA")
    page.get_by_label("Destination latitude").fill(str(LOS_ANGELES[0]))
    page.get_by_label("Destination longitude").fill(str(LOS_ANGELES[1]))
    page.get_by_label("Pickup window start").fill(datetime_local(now + timedelta(hours=1)))
    page.get_by_label("Pickup window end").fill(datetime_local(now + timedelta(hours=3)))
    page.get_by_label("Delivery window start").fill(datetime_local(now + timedelta(hours=36)))
    page.get_by_label("Delivery window end").fill(datetime_local(now + timedelta(hours=60)))
    page.get_by_label("Weight (kg)").fill("18000")
    page.get_by_label("Target rate (USD)").fill("7400.00")
    panel = page.locator("#eligibility")
    expect(panel.locator('[data-carrier="transcon-autonomous"]')).to_have_attribute("data-eligible", "yes")
    expect(panel.locator('[data-carrier="lonestar"]')).to_have_attribute("data-eligible", "no")
    expect(panel.locator('[data-carrier="lonestar"]')).to_contain_text("outside operating regions")
    expect(panel).to_contain_text("1 of 2 carriers can take this load")
    assert not Shipment.objects.exists()
    screenshot(page, "playbook-1-eligible-before-saving")
    page.get_by_role("button", name="Create shipment").click()
    expect(page.get_by_text("created.")).to_be_visible()
    shipment = Shipment.objects.get()
    assert (shipment.origin_region, shipment.destination_region) == ("IL", "CA")

    # 2. Tendered to the autonomous carrier; its API accepts at once, and the mission is there.
    ranking = page.locator("#ship-ranking")
    expect(ranking.get_by_role("row").filter(has_text="Transcon Autonomous Lines")).to_contain_text("Eligible")
    ranking.locator('select[name="carrier"]').select_option(label="Transcon Autonomous Lines")
    ranking.get_by_role("button", name="Tender", exact=True).click()
    expect(page.get_by_text(f"Tendered {shipment.reference} to Transcon Autonomous Lines.")).to_be_visible()
    tender = Tender.objects.get(shipment=shipment)
    assert tender.status == TenderStatus.ACCEPTED and carrier_api.tender_count() == 1
    submit = next(r for r in carrier_api.requests if r["path"] == "/tenders")
    assert submit["idempotency_key"] == str(tender.idempotency_key)
    mission = Mission.objects.get(shipment=shipment)
    assert mission.carrier_id == transcon.pk and mission.vehicle is not None
    assert mission.vehicle.external_id == "TAL-401"
    missions = page.locator("#ship-missions")
    expect(missions.get_by_role("link", name=f"Mission #{mission.pk}")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(missions).to_contain_text("TAL-401")
    screenshot(page, "playbook-2-accepted")
    # The route fixed at assignment: the I-55 / I-44 / I-40 / I-15 corridor, Chicago to Los Angeles.
    assert mission.planned_route_basis == "corridor I-55/I-44/I-40/I-15 Chicago-Los Angeles"
    assert [tuple(p) for p in mission.planned_route] == list(route_plan(CHICAGO, LOS_ANGELES).points)

    # 3. The truck reports from I-55 near Joliet; on the live map it sits on its route.
    page.get_by_role("link", name="Live map").click()
    expect(page).to_have_url(f"{live_url}/map/")
    expect(page.locator("#livemap-status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    send(transcon, telemetry(mission, at=timezone.now(), lat=41.5250, lon=-88.0817, speed_kph=92.0))
    wait_for_truck_at(page, mission, 41.5250)
    page.wait_for_function(f"() => (({READ_ROUTES})().routes || []).length === 1", timeout=LIVE_TIMEOUT_MS)
    (line,) = routes_drawn(page)["routes"]
    assert line[0] == list(CHICAGO) and line[-1] == list(LOS_ANGELES)
    assert line == [list(p) for p in mission.planned_route]
    ends = routes_drawn(page)["route-ends"]
    assert [*CHICAGO, "triangle-up"] in ends and [*LOS_ANGELES, "star"] in ends
    truck = trucks(page)[str(mission.pk)]
    route = Polyline([tuple(p) for p in mission.planned_route])
    assert route.locate(truck["lat"], truck["lon"]).offset_km < 0.5
    assert haversine_km(truck["lat"], truck["lon"], *CHICAGO) < 60

    # Its details: the lane, the route and the ETA against the delivery window.
    page.locator("#livemap-rows tr", has_text="TAL-401").click()
    detail = page.locator("#livemap-detail")
    expect(detail).to_contain_text("Chicago, IL → Los Angeles, CA", timeout=LIVE_TIMEOUT_MS)
    expect(detail).to_contain_text("corridor I-55/I-44/I-40/I-15 Chicago-Los Angeles")
    expect(detail).to_contain_text("on time")
    expect(page.locator("#livemap-rows tr", has_text="TAL-401")).to_contain_text("Transcon Autonomous Lines")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "playbook-3-live-map", part=page.locator(".livemap-layout"))

    network.assert_loopback_only()
    assert network.page_errors == []
