"""The dispatcher's live map: trucks on their planned routes, ETA against the window, filters, follow, stale/lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, WebSocket, expect

from missions.choices import AutonomyMode, MissionStatus
from missions.models import Carrier, Mission
from missions.routes import Polyline, route_plan
from missions.telemetry.map_eta import EtaTracker, MissionRoute
from tests.browser.fleet import READ_ROUTES, READ_TRUCKS, routes_drawn, send, telemetry, trucks, wait_for_truck_at
from tests.browser.support import (
    LIVE_TIMEOUT_MS,
    NetworkLog,
    assert_not_reloaded,
    login,
    mark_page,
    screenshot,
)
from tests.factories import CarrierFactory, ContractFactory, MissionFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What the map draws for a truck quiet past half its telemetry gap (stale) and past the gap (lost).
STALE_COLOUR, LOST_COLOUR, EN_ROUTE_COLOUR = "#e69f00", "#9e9e9e", "#1b9e77"
LatLon = tuple[float, float]
DALLAS, HOUSTON = (32.7767, -96.7970), (29.7604, -95.3698)
CHICAGO, LOS_ANGELES = (41.8781, -87.6298), (34.0522, -118.2437)
ATLANTA, EL_PASO, PHOENIX = (33.7490, -84.3880), (31.7619, -106.4850), (33.4484, -112.0740)
ADDRESSES = {
    DALLAS: ("Dallas, TX", "TX"),
    HOUSTON: ("Houston, TX", "TX"),
    CHICAGO: ("Chicago, IL", "IL"),
    LOS_ANGELES: ("Los Angeles, CA", "CA"),
    ATLANTA: ("Atlanta, GA", "GA"),
    EL_PASO: ("El Paso, TX", "TX"),
    PHOENIX: ("Phoenix, AZ", "AZ"),
}


def on_route(
    carrier: Carrier,
    vehicle_id: str,
    *,
    origin: LatLon = DALLAS,
    destination: LatLon = HOUSTON,
    window_end: datetime | None = None,
    status: str = MissionStatus.EN_ROUTE,
    mode: str = AutonomyMode.AUTONOMOUS,
) -> Mission:
    """An active mission with its planned route stored as assignment stores it."""
    route = route_plan(origin, destination)
    now = timezone.now()
    mission: Mission = MissionFactory(
        carrier=carrier,
        status=status,
        autonomy_mode=mode,
        vehicle=VehicleFactory(carrier=carrier, external_id=vehicle_id),
        planned_route=[list(p) for p in route.points],
        planned_route_km=route.km,
        planned_route_basis=route.basis,
        shipment__origin_address=ADDRESSES[origin][0],
        shipment__origin_region=ADDRESSES[origin][1],
        shipment__origin_lat=origin[0],
        shipment__origin_lon=origin[1],
        shipment__destination_address=ADDRESSES[destination][0],
        shipment__destination_region=ADDRESSES[destination][1],
        shipment__destination_lat=destination[0],
        shipment__destination_lon=destination[1],
        shipment__delivery_window_start=now - timedelta(hours=1),
        shipment__delivery_window_end=window_end or now + timedelta(hours=60),
    )
    return mission


def expected_late_s(mission: Mission, *, at: datetime, lat: float, lon: float) -> int:
    """What the server's estimate gives for a first report (the same code, run here, for the exact figure)."""
    tracker = EtaTracker()
    tracker.routes_add(
        [
            MissionRoute(
                mission_id=mission.pk,
                points=tuple((p[0], p[1]) for p in mission.planned_route),
                destination=(mission.shipment.destination_lat, mission.shipment.destination_lon),
                window_end_s=mission.shipment.delivery_window_end.timestamp(),
                carrier_eta_s=None,
                wire={},
            )
        ]
    )
    position: dict[str, Any] = {
        "mission_id": mission.pk,
        "lat": lat,
        "lon": lon,
        "speed_kph": 90.0,
        "last_seen_at": at.isoformat().replace("+00:00", "Z"),
    }
    tracker.observe(position, margin_s=1800)
    return int(position["late_s"])


def duration_text(seconds: int) -> str:
    """How the page writes a duration: minutes (rounded up) below two hours, else hours and minutes."""
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def open_map(page: Page, live_url: str, user: User, *, trucks_expected: int) -> None:
    login(page, live_url, user, next_path="/map/")
    expect(page).to_have_url(f"{live_url}/map/")
    expect(page.locator("#livemap-status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    page.wait_for_function(
        f"() => Object.keys(({READ_TRUCKS})()).length === {trucks_expected}", timeout=LIVE_TIMEOUT_MS
    )
    # The map is drawn offline: plotly's own SVG with the US states from the local topojson (underneath).
    page.wait_for_function("() => document.querySelectorAll('#livemap-routes .geo .subunits path').length > 0")


def wait_for_routes(page: Page, count: int) -> None:
    page.wait_for_function(
        f"""() => {{ const r = ({READ_ROUTES})();
                    return ((r.routes || []).length + (r["routes-at-risk"] || []).length) === {count}; }}""",
        timeout=LIVE_TIMEOUT_MS,
    )


def test_trucks_move_live_and_quiet_ones_are_drawn_stale_then_lost(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    lone_star = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    transcon = CarrierFactory(name="Transcon Autonomous Lines", slug="transcon")
    now = datetime.now(UTC)
    moving = on_route(lone_star, "LSA-201")
    quiet = on_route(lone_star, "LSA-203", destination=ATLANTA)
    # Due in Los Angeles in 9 hours with 1,300 km to go: at risk as well as silent.
    silent = on_route(transcon, "TAL-402", origin=CHICAGO, destination=LOS_ANGELES, window_end=now + timedelta(hours=9))
    # A carrier whose contract allows 6 s of silence: its truck turns stale at 3 s and lost at 6 s.
    terse = CarrierFactory(name="Terse Robotics", slug="terse")
    ContractFactory(carrier=terse, telemetry_gap_seconds=6)
    fading = on_route(terse, "TRS-1", origin=EL_PASO, destination=PHOENIX)
    # The default gap is 60 s: stale past 30 s, lost past 60 s. Southbound on I-45 near Ennis, TX; eastbound
    # on I-20 at Shreveport, LA; westbound on I-40 at Amarillo, TX.
    send(lone_star, telemetry(moving, at=now - timedelta(seconds=2), lat=32.3293, lon=-96.6253, speed_kph=96.0))
    send(lone_star, telemetry(quiet, at=now - timedelta(seconds=40), lat=32.5252, lon=-93.7502, speed_kph=90.0))
    send(transcon, telemetry(silent, at=now - timedelta(minutes=5), lat=35.2220, lon=-101.8313, speed_kph=0.0))

    open_map(page, live_url, dispatcher, trucks_expected=3)
    first = trucks(page)
    assert (first[str(moving.pk)]["lat"], first[str(moving.pk)]["color"]) == (32.3293, EN_ROUTE_COLOUR)
    assert (first[str(moving.pk)]["symbol"], first[str(moving.pk)]["label"]) == ("circle", "")
    # Stale: amber and hollow, said in the hover text. Lost: grey, crossed, labelled on the map.
    assert (first[str(quiet.pk)]["color"], first[str(quiet.pk)]["symbol"]) == (STALE_COLOUR, "circle-open")
    assert "STALE" in first[str(quiet.pk)]["text"] and first[str(quiet.pk)]["label"] == ""
    assert (first[str(silent.pk)]["color"], first[str(silent.pk)]["symbol"]) == (LOST_COLOUR, "circle-x")
    assert first[str(silent.pk)]["label"] == "LOST TAL-402" and "LOST" in first[str(silent.pk)]["text"]
    assert "STALE" not in first[str(moving.pk)]["text"] and "LOST" not in first[str(moving.pk)]["text"]

    # The fleet list says it in words too, lost first.
    rows = page.locator("#livemap-rows")
    expect(rows.locator("tr").first).to_contain_text("TAL-402")
    expect(rows.locator("tr", has_text="TAL-402")).to_have_attribute("data-comms", "lost")
    expect(rows.locator("tr", has_text="TAL-402").locator(".tag-lost")).to_have_text("lost")
    expect(rows.locator("tr", has_text="LSA-203")).to_have_attribute("data-comms", "stale")
    expect(rows.locator("tr", has_text="LSA-203").locator(".tag-stale")).to_have_text("stale")
    expect(rows.locator("tr", has_text="LSA-201")).to_have_attribute("data-comms", "live")
    expect(rows.locator("tr", has_text="TAL-402")).to_have_attribute("data-stale", "true")
    # Silent and late: listed at risk too (its estimate is from its last report).
    expect(page.locator("#livemap-risk-rows tr", has_text="TAL-402")).to_have_attribute("data-comms", "lost")
    screenshot(page, "live-map-1-initial")

    # The truck drives on: each new report moves its marker without a reload.
    mark_page(page)
    positions = [(32.3293, -96.6253)]
    for step, (lat, lon) in enumerate([(32.2150, -96.5480), (32.0954, -96.4689)], start=1):
        send(lone_star, telemetry(moving, at=now + timedelta(seconds=step), lat=lat, lon=lon, speed_kph=97.0))
        wait_for_truck_at(page, moving, lat)
        positions.append((trucks(page)[str(moving.pk)]["lat"], trucks(page)[str(moving.pk)]["lon"]))
    assert positions == [(32.3293, -96.6253), (32.2150, -96.5480), (32.0954, -96.4689)]
    latest = trucks(page)
    assert (latest[str(silent.pk)]["lat"], latest[str(silent.pk)]["color"]) == (35.2220, LOST_COLOUR)

    # A truck that stops reporting turns stale, then lost, on the clock alone (no message about it).
    send(terse, telemetry(fading, at=datetime.now(UTC), lat=32.3199, lon=-106.7637, speed_kph=88.0))
    wait_for_truck_at(page, fading, 32.3199)
    for symbol, state in (("circle", "live"), ("circle-open", "stale"), ("circle-x", "lost")):
        page.wait_for_function(
            f"() => (({READ_TRUCKS})()[{fading.pk}] || {{}}).symbol === '{symbol}'", timeout=LIVE_TIMEOUT_MS
        )
        expect(page.locator("#livemap-rows tr", has_text="TRS-1")).to_have_attribute("data-comms", state)
    assert trucks(page)[str(fading.pk)]["label"] == "LOST TRS-1"

    # Selecting the silent truck shows its details, marked lost.
    rows.locator("tr", has_text="TAL-402").click()
    detail = page.locator("#livemap-detail")
    expect(detail).to_contain_text(f"Mission #{silent.pk}", timeout=LIVE_TIMEOUT_MS)
    expect(detail.locator(".tag-lost")).to_have_text("lost")
    expect(detail).to_contain_text("Chicago, IL → Los Angeles, CA")
    expect(detail).to_contain_text("late by")
    assert_not_reloaded(page)
    screenshot(page, "live-map-2-moved-stale-lost", part=page.locator(".livemap-layout"))

    network.assert_loopback_only()
    assert any(u.endswith("/ws/map/") for u in network.websockets), network.websockets
    assert any("/static/vendor/topojson/" in u for u in network.requests), "the map geometry was not served locally"
    assert network.page_errors == []


def test_planned_routes_are_drawn_once_each_with_their_ends(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    transcon = CarrierFactory(name="Transcon Autonomous Lines", slug="transcon")
    lone_star = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    long_haul = on_route(transcon, "TAL-401", origin=CHICAGO, destination=LOS_ANGELES)
    short_haul = on_route(lone_star, "LSA-101")
    now = datetime.now(UTC)
    send(transcon, telemetry(long_haul, at=now, lat=35.4676, lon=-97.5164, speed_kph=95.0))  # Oklahoma City
    send(lone_star, telemetry(short_haul, at=now, lat=32.3293, lon=-96.6253, speed_kph=90.0))

    asked: list[list[int]] = []

    def watch(ws: WebSocket) -> None:
        def sent(payload: str | bytes) -> None:
            if isinstance(payload, str) and '"routes"' in payload:
                asked.append(json.loads(payload)["mission_ids"])

        ws.on("framesent", sent)

    page.on("websocket", watch)
    open_map(page, live_url, dispatcher, trucks_expected=2)
    wait_for_routes(page, 2)
    drawn = routes_drawn(page)
    lines = sorted(drawn["routes"], key=len)
    assert lines == sorted(
        ([list(p) for p in short_haul.planned_route], [list(p) for p in long_haul.planned_route]), key=len
    )
    assert lines[1][0] == list(CHICAGO) and lines[1][-1] == list(LOS_ANGELES)
    assert [CHICAGO[0], CHICAGO[1], "triangle-up"] in drawn["route-ends"]
    assert [LOS_ANGELES[0], LOS_ANGELES[1], "star"] in drawn["route-ends"]
    # The truck sits on its line.
    truck = trucks(page)[str(long_haul.pk)]
    assert Polyline([tuple(p) for p in long_haul.planned_route]).locate(truck["lat"], truck["lon"]).offset_km < 1.0

    # More frames: the routes are not asked for (nor sent) again.
    for step in range(1, 4):
        send(transcon, telemetry(long_haul, at=now + timedelta(seconds=step), lat=35.45, lon=-97.6 - step / 10,
                                 speed_kph=95.0))  # fmt: skip
        wait_for_truck_at(page, long_haul, 35.45)
    asked_ids = sorted(i for request in asked for i in request)
    assert asked_ids == sorted([long_haul.pk, short_haul.pk])

    # The selected truck's route is drawn bold; the planned route is in the detail.
    page.locator("#livemap-rows tr", has_text="TAL-401").click()
    detail = page.locator("#livemap-detail")
    expect(detail).to_contain_text("Chicago-Los Angeles")
    expect(detail).to_contain_text(f"{round(long_haul.planned_route_km):,} km")
    page.wait_for_function(f"() => (({READ_ROUTES})()['route-selected'] || []).length === 1")
    assert routes_drawn(page)["route-selected"][0] == [list(p) for p in long_haul.planned_route]

    # Routes can be hidden; the selected one stays.
    page.get_by_role("checkbox", name="Planned routes").uncheck()
    page.wait_for_function(f"() => (({READ_ROUTES})().routes || []).length === 1")
    screenshot(page, "live-map-3-routes")
    network.assert_loopback_only()


def test_trucks_at_risk_are_flagged_on_the_map_and_listed_sortable(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    lone_star = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    sunbelt = CarrierFactory(name="Sunbelt Driverless", slug="sunbelt")
    now = datetime.now(UTC)
    at = now - timedelta(seconds=1)
    ennis = (32.3293, -96.6253)
    # About 320 km left at the planning speed (80 km/h): four hours. Windows end in 2 h 50, 4 h 10 and 9 h.
    late = on_route(lone_star, "LSA-101", window_end=now + timedelta(hours=2, minutes=50))
    tight = on_route(sunbelt, "SBD-201", window_end=now + timedelta(hours=4, minutes=10))
    easy = on_route(lone_star, "LSA-102", window_end=now + timedelta(hours=9))
    for mission in (late, tight, easy):
        send(mission.carrier, telemetry(mission, at=at, lat=ennis[0], lon=ennis[1], speed_kph=90.0))
    late_s = expected_late_s(late, at=at, lat=ennis[0], lon=ennis[1])
    tight_s = expected_late_s(tight, at=at, lat=ennis[0], lon=ennis[1])
    assert late_s > 3600 and -1800 < tight_s < 0  # the scene is what it says

    open_map(page, live_url, dispatcher, trucks_expected=3)
    risk = page.locator("#livemap-risk-rows")
    expect(risk.locator("tr")).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    # Sorted by lateness, latest first; "late by" and "on time ... to spare" in words.
    expect(risk.locator("tr").nth(0)).to_contain_text("LSA-101")
    late_text = duration_text(late_s)
    expect(risk.locator("tr").nth(0)).to_contain_text(late_text)
    expect(risk.locator("tr").nth(1)).to_contain_text("SBD-201")
    expect(risk.locator("tr").nth(1)).to_contain_text(f"{duration_text(-tight_s)} spare")
    expect(page.locator("#livemap-risk-count")).to_have_text("(2)")
    fleet = page.locator("#livemap-rows")
    expect(fleet.locator("tr", has_text="LSA-101")).to_contain_text(f"late by {late_text}")
    expect(fleet.locator("tr", has_text="LSA-102")).to_contain_text("on time")
    expect(fleet.locator("tr", has_text="LSA-101")).to_have_attribute("data-at-risk", "true")
    expect(fleet.locator("tr", has_text="LSA-102")).to_have_attribute("data-at-risk", "false")

    # On the map: both at-risk routes are drawn red and dashed, the other plainly; the hover says it.
    wait_for_routes(page, 3)
    drawn = routes_drawn(page)
    assert len(drawn["routes-at-risk"]) == 2 and len(drawn["routes"]) == 1
    assert f"late by {late_text}" in trucks(page)[str(late.pk)]["text"]

    # The list sorts by its columns.
    page.locator("#livemap-risk th button[data-sort='late']").click()  # ascending
    expect(risk.locator("tr").nth(0)).to_contain_text("SBD-201")
    expect(page.locator("#livemap-risk th", has_text="Late by")).to_have_attribute("aria-sort", "ascending")
    page.locator("#livemap-risk th button[data-sort='carrier']").click()
    expect(risk.locator("tr").nth(0)).to_contain_text("Lone Star Autonomous")
    page.locator("#livemap-risk th button[data-sort='carrier']").click()
    expect(risk.locator("tr").nth(0)).to_contain_text("Sunbelt Driverless")
    expect(page.locator("#livemap-risk th", has_text="Carrier")).to_have_attribute("aria-sort", "descending")

    # A row opens the truck's detail: its ETA against the window.
    risk.locator("tr", has_text="LSA-101").click()
    detail = page.locator("#livemap-detail")
    expect(detail).to_contain_text(f"late by {late_text}", timeout=LIVE_TIMEOUT_MS)
    expect(detail).to_contain_text("along the planned route")

    # A later report puts it near Conroe (about 65 km to go): on time after all, it leaves the list.
    send(lone_star, telemetry(late, at=datetime.now(UTC), lat=30.3119, lon=-95.4561, speed_kph=96.0))
    expect(risk.locator("tr")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(risk.locator("tr").first).to_contain_text("SBD-201")
    screenshot(page, "live-map-4-at-risk", part=page.locator(".livemap-layout"))
    network.assert_loopback_only()


def test_filters_by_carrier_status_and_autonomy_mode(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    lone_star = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    sunbelt = CarrierFactory(name="Sunbelt Driverless", slug="sunbelt")
    a = on_route(lone_star, "LSA-101")
    b = on_route(lone_star, "LSA-102", status=MissionStatus.SUSPENDED)
    c = on_route(sunbelt, "SBD-201", origin=EL_PASO, destination=PHOENIX, mode=AutonomyMode.SUPERVISED)
    now = datetime.now(UTC)
    send(lone_star, telemetry(a, at=now, lat=32.3293, lon=-96.6253, speed_kph=90.0))
    send(lone_star, telemetry(b, at=now, lat=31.7246, lon=-96.1653, speed_kph=0.0))
    send(sunbelt, telemetry(c, at=now, lat=32.3199, lon=-106.7637, speed_kph=80.0, mode="supervised"))
    open_map(page, live_url, dispatcher, trucks_expected=3)
    wait_for_routes(page, 3)

    def shown() -> list[str]:
        return sorted(trucks(page))

    def listed() -> list[str]:
        return sorted(page.locator("#livemap-rows tr").evaluate_all("rows => rows.map(r => r.dataset.missionId)"))

    def wait_for_shown(*missions: Mission) -> None:
        ids = json.dumps(sorted(str(m.pk) for m in missions), separators=(",", ":"))
        page.wait_for_function(
            f"() => JSON.stringify(Object.keys(({READ_TRUCKS})()).sort()) === '{ids}'", timeout=LIVE_TIMEOUT_MS
        )

    page.get_by_label("Carrier").select_option(label="Sunbelt Driverless")
    wait_for_shown(c)
    assert shown() == listed() == [str(c.pk)]
    assert len(routes_drawn(page)["routes"]) == 1
    page.get_by_label("Carrier").select_option(label="Lone Star Autonomous")
    wait_for_shown(a, b)
    assert shown() == listed() == sorted([str(a.pk), str(b.pk)])
    expect(page.locator("#livemap-count")).to_have_text("(2 of 3)")

    page.get_by_label("Status").select_option(label="Suspended")
    wait_for_shown(b)
    assert shown() == listed() == [str(b.pk)]

    page.get_by_label("Carrier").select_option(label="All carriers")
    page.get_by_label("Status").select_option(label="All statuses")
    page.get_by_label("Autonomy mode").select_option(label="Supervised")
    wait_for_shown(c)
    assert shown() == listed() == [str(c.pk)]
    assert trucks(page)[str(c.pk)]["symbol"] == "diamond"

    # A filtered-out truck's new report does not bring it back.
    send(lone_star, telemetry(a, at=now + timedelta(seconds=1), lat=32.2150, lon=-96.5480, speed_kph=90.0))
    page.wait_for_timeout(1500)
    assert shown() == [str(c.pk)]
    page.get_by_label("Autonomy mode").select_option(label="All modes")
    wait_for_truck_at(page, a, 32.2150)
    assert len(shown()) == 3
    network.assert_loopback_only()


def truck_offset_from_centre(page: Page, mission: Mission) -> tuple[float, float]:
    """Pixels between the mission's marker and the centre of the map's drawing area (x, y)."""
    return tuple(
        page.evaluate(
            """(id) => {
              const el = document.getElementById("livemap");
              const trucks = el.data.find((trace) => trace.name === "trucks");
              const i = trucks.customdata.indexOf(id);
              // plotly binds each drawn trace to its calculated data, and each marker to its point.
              const layer = [...el.querySelectorAll(".geo .frontplot .trace.scattergeo")]
                .find((g) => g.__data__ && g.__data__[0].trace.name === "trucks");
              const point = [...layer.querySelectorAll("path.point")].find((p) =>
                p.__data__.lonlat[0] === trucks.lon[i] && p.__data__.lonlat[1] === trucks.lat[i]);
              const marker = point.getBoundingClientRect();
              const frame = el.querySelector(".geo .bg rect").getBoundingClientRect();
              return [marker.x + marker.width / 2 - (frame.x + frame.width / 2),
                      marker.y + marker.height / 2 - (frame.y + frame.height / 2)];
            }""",
            mission.pk,
        )
    )


# Where the trucks' plot and the map underneath draw the same three places, at most this far apart (pixels).
LAYERS_APART = """() => {
  const top = document.getElementById("livemap")._fullLayout.geo._subplot.projection;
  const under = document.getElementById("livemap-routes")._fullLayout.geo._subplot.projection;
  return Math.max(...[[-87.63, 41.88], [-118.24, 34.05], [-95.37, 29.76]].map((p) => {
    const a = top(p), b = under(p);
    return a && b ? Math.hypot(a[0] - b[0], a[1] - b[1]) : 1e9;
  }));
}"""


def wait_for_layers_aligned(page: Page) -> None:
    page.wait_for_function(f"() => ({LAYERS_APART})() <= 1", timeout=LIVE_TIMEOUT_MS)


def test_following_a_truck_keeps_it_centred(page: Page, live_url: str, dispatcher: User, network: NetworkLog) -> None:
    transcon = CarrierFactory(name="Transcon Autonomous Lines", slug="transcon")
    followed = on_route(transcon, "TAL-401", origin=CHICAGO, destination=LOS_ANGELES)
    other = on_route(transcon, "TAL-402", origin=CHICAGO, destination=LOS_ANGELES)
    now = datetime.now(UTC)
    send(transcon, telemetry(followed, at=now, lat=38.6270, lon=-90.1994, speed_kph=95.0))  # St. Louis
    send(transcon, telemetry(other, at=now, lat=35.0844, lon=-106.6504, speed_kph=95.0))  # Albuquerque
    open_map(page, live_url, dispatcher, trucks_expected=2)
    far_x, far_y = truck_offset_from_centre(page, followed)
    assert abs(far_x) > 50 or abs(far_y) > 50  # not centred before following

    page.locator("#livemap-rows tr", has_text="TAL-401").click()
    page.get_by_role("button", name="Follow this truck").click()
    expect(page.locator("#livemap-following")).to_contain_text("Following TAL-401")
    page.wait_for_function("() => document.getElementById('livemap').dataset.following !== ''")
    line = Polyline([tuple(p) for p in followed.planned_route])
    start_km = line.locate(38.6270, -90.1994).along_km
    for step in range(1, 4):
        lat, lon = line.at(start_km + step * 15.0)  # 15 km further west each report
        send(transcon, telemetry(followed, at=now + timedelta(seconds=step), lat=lat, lon=lon, speed_kph=95.0))
        wait_for_truck_at(page, followed, lat)
        page.wait_for_timeout(300)  # the frame after the data
        x, y = truck_offset_from_centre(page, followed)
        assert abs(x) <= 3 and abs(y) <= 3, (step, x, y)
        wait_for_layers_aligned(page)  # its route underneath moved with it
    # Zoomed in on it: the other truck, 1,400 km away, is off the drawing area.
    ox, oy = truck_offset_from_centre(page, other)
    assert abs(ox) > 700 or abs(oy) > 300
    screenshot(page, "live-map-5-following", part=page.locator(".livemap-layout"))

    page.get_by_role("button", name="Stop following").first.click()
    expect(page.locator("#livemap-following")).to_be_hidden()
    page.get_by_role("button", name="Whole map").click()
    page.wait_for_timeout(300)
    assert truck_offset_from_centre(page, other)[0] < 700  # the whole country again
    wait_for_layers_aligned(page)

    # The dispatcher zooms in with the mouse wheel: the routes underneath go with the trucks.
    before = truck_offset_from_centre(page, other)
    box = page.locator("#livemap").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    after = truck_offset_from_centre(page, other)
    assert abs(after[0]) > abs(before[0]) + 50, (before, after)
    wait_for_layers_aligned(page)
    network.assert_loopback_only()
