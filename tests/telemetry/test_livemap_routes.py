"""The live map's routes and estimates over the socket: routes once on request, ETA and comms state in every row."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from missions.choices import MissionStatus
from missions.models import Carrier, Mission
from missions.routes import route_plan
from missions.telemetry import consumers
from missions.telemetry.ingest import FLEET_GROUP, ingest_events
from missions.telemetry.map_state import comms_state, fleet_state, mission_routes
from tests.conftest import verified_client
from tests.factories import ContractFactory, MissionFactory
from tests.telemetry.conftest import make_event, seconds_ago
from tms_console.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 10  # an upper bound for a message to arrive, never asserted as a timing
DALLAS, HOUSTON = (32.7767, -96.7970), (29.7604, -95.3698)


@pytest.fixture(autouse=True)
def _in_process_layer() -> Iterator[None]:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers, LIVEMAP_FRAME_SECONDS=0.05, LIVEMAP_AT_RISK_MARGIN_MINUTES=30):
        yield


async def _map(user: User) -> WebsocketCommunicator:
    client = await sync_to_async(verified_client)(user)
    cookie = client.cookies["sessionid"].value
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", f"sessionid={cookie}".encode())]
    return WebsocketCommunicator(application, "/ws/map/", headers=headers)


async def _next(comm: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    message = await comm.receive_json_from(timeout=TIMEOUT)
    while message["type"] != kind:
        message = await comm.receive_json_from(timeout=TIMEOUT)
    return message


def _dallas_houston(carrier: Carrier, *, window_end_in: timedelta, **fields: Any) -> Mission:
    mission: Mission = MissionFactory(
        carrier=carrier,
        status=MissionStatus.EN_ROUTE,
        shipment__delivery_window_start=timezone.now() - timedelta(hours=1),
        shipment__delivery_window_end=timezone.now() + window_end_in,
        **fields,
    )
    return mission


def test_stale_at_half_the_contract_gap_and_lost_past_it(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, telemetry_gap_seconds=120)
    now = timezone.now()
    assert comms_state(now - timedelta(seconds=59), gap_s=120, now=now) == "live"
    assert comms_state(now - timedelta(seconds=61), gap_s=120, now=now) == "stale"
    assert comms_state(now - timedelta(seconds=121), gap_s=120, now=now) == "lost"
    assert comms_state(None, gap_s=120, now=now) == "lost"
    missions = {age: MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for age in (10, 90, 300)}
    for age, mission in missions.items():
        ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(age))], source="t")
    rows = {r["mission_id"]: r for r in fleet_state()}
    assert {age: rows[m.pk]["comms"] for age, m in missions.items()} == {10: "live", 90: "stale", 300: "lost"}
    assert {(r["stale_after_s"], r["lost_after_s"]) for r in rows.values()} == {(60.0, 120.0)}
    assert [rows[m.pk]["stale"] for m in missions.values()] == [False, True, True]


def test_routes_are_the_stored_route_or_planned_on_read(carrier_a: Carrier) -> None:
    stored = MissionFactory(
        carrier=carrier_a,
        planned_route=[[32.0, -97.0], [31.5, -97.0], [31.0, -97.0]],
        planned_route_km=111.2,
        planned_route_basis="great circle (no known corridor)",
    )
    unplanned = MissionFactory(carrier=carrier_a)  # written around the services: Dallas -> Houston, no route
    routes = {r.mission_id: r for r in mission_routes(mission_ids=[stored.pk, unplanned.pk])}
    assert routes[stored.pk].wire["points"] == [[32.0, -97.0], [31.5, -97.0], [31.0, -97.0]]
    assert routes[stored.pk].wire["km"] == 111.2
    planned = route_plan(DALLAS, HOUSTON)
    assert routes[unplanned.pk].wire["points"] == [list(p) for p in planned.points]
    assert routes[unplanned.pk].wire["basis"] == "corridor I-45 Dallas-Houston"
    wire = routes[unplanned.pk].wire
    assert wire["origin"]["address"] == "Dallas, TX" and wire["destination"]["address"] == "Houston, TX"
    assert wire["carrier"] == carrier_a.name and wire["shipment"] == unplanned.shipment.reference
    assert wire["delivery_window_end"].endswith("Z") and wire["lost_after_s"] == 60.0


async def test_a_map_gets_etas_in_its_snapshot_and_routes_once_when_it_asks(
    dispatcher: User, carrier_a: Carrier
) -> None:
    # Both trucks half way down I-45 (about 190 km left); one's window ends in 5 h, the other's in 1 h.
    on_time = await sync_to_async(_dallas_houston)(carrier_a, window_end_in=timedelta(hours=5))
    late = await sync_to_async(_dallas_houston)(carrier_a, window_end_in=timedelta(hours=1))
    position = {"lat": 31.4638, "lon": -96.0580, "speed_kph": 90.0}
    for mission in (on_time, late):
        await sync_to_async(ingest_events)(
            carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(2), position=position)], source="t"
        )
    comm = await _map(dispatcher)
    assert (await comm.connect(timeout=TIMEOUT))[0]
    snapshot = await _next(comm, "snapshot")
    rows = {v["mission_id"]: v for v in snapshot["vehicles"]}
    assert rows[on_time.pk]["eta_basis"] == "route" and rows[on_time.pk]["at_risk"] is False
    assert 150 < rows[on_time.pk]["remaining_km"] < 230
    assert rows[late.pk]["at_risk"] is True and rows[late.pk]["late_s"] > 3600  # 2+ h at 80 km/h, due in 1 h
    assert "points" not in rows[late.pk]  # no geometry in the positions

    await comm.send_json_to({"type": "routes", "mission_ids": [on_time.pk, late.pk, 999_999, "x", True]})
    answer = await _next(comm, "routes")
    assert sorted(r["mission_id"] for r in answer["routes"]) == sorted([on_time.pk, late.pk])
    first = next(r for r in answer["routes"] if r["mission_id"] == on_time.pk)
    assert first["points"][0] == list(DALLAS) and first["points"][-1] == list(HOUSTON)
    assert first["basis"] == "corridor I-45 Dallas-Houston"

    # A frame carries the estimate again (from the process's tracker), never the route.
    layer = get_channel_layer()
    moved = {
        "mission_id": late.pk,
        "vehicle_id": "x",
        "lat": 30.9496,
        "lon": -95.9116,
        "speed_kph": 95.0,
        "heading_deg": None,
        "autonomy_mode": "autonomous",
        "status": "en_route",
        "safety_event": None,
        "last_seen_at": (timezone.now() - timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
    }
    await layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [moved]})
    frame = await _next(comm, "positions")
    (vehicle,) = frame["vehicles"]
    assert vehicle["mission_id"] == late.pk and vehicle["eta_basis"] == "route" and "points" not in vehicle
    assert vehicle["remaining_km"] < rows[late.pk]["remaining_km"]

    await comm.send_json_to({"type": "detail", "mission_id": late.pk})
    detail = (await _next(comm, "detail"))["mission"]
    assert detail["at_risk"] is True and detail["eta"] == vehicle["eta"]
    await comm.disconnect()


async def test_a_mission_first_seen_in_a_frame_gets_its_estimate_as_soon_as_its_route_is_read(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the broadcast reaches the map (the database poll would bring the same row a second time).
    monkeypatch.setattr(consumers, "MAP_POLL_SECONDS", 3600.0)
    comm = await _map(dispatcher)
    assert (await comm.connect(timeout=TIMEOUT))[0]
    assert (await _next(comm, "snapshot"))["vehicles"] == []
    newcomer = await sync_to_async(_dallas_houston)(carrier_a, window_end_in=timedelta(hours=6))
    # One report, and nothing after it (the truck may go silent): the map still gets its estimate.
    event = make_event(newcomer, ts=seconds_ago(1), position={"lat": 32.3293, "lon": -96.6253, "speed_kph": 88.0})
    await sync_to_async(ingest_events)(carrier=carrier_a, events=[event], source="t")
    (first,) = (await _next(comm, "positions"))["vehicles"]
    assert first["mission_id"] == newcomer.pk
    # The report goes out at once; if its route was not read by then, it comes again with its estimate.
    again = first
    if "eta" not in first:
        (again,) = (await _next(comm, "positions"))["vehicles"]
    assert again["last_seen_at"] == first["last_seen_at"] and again["lat"] == first["lat"]
    assert again["eta_basis"] == "route" and 300 < again["remaining_km"] < 340 and again["at_risk"] is False
    await comm.disconnect()


async def test_a_position_of_a_mission_without_a_route_is_asked_about_once(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[list[int]] = []
    real_read = consumers._routes_read

    async def counted(**kwargs: Any) -> Any:
        reads.append(list(kwargs["mission_ids"]))
        return await real_read(**kwargs)

    monkeypatch.setattr(consumers, "_routes_read", counted)
    comm = await _map(dispatcher)
    assert (await comm.connect(timeout=TIMEOUT))[0]
    await _next(comm, "snapshot")
    # A mission gone by the time its route is read (here: never there).
    ghost = {
        "mission_id": 999_999,
        "vehicle_id": "x",
        "lat": 31.0,
        "lon": -96.0,
        "speed_kph": 80.0,
        "heading_deg": None,
        "autonomy_mode": "autonomous",
        "status": "en_route",
        "safety_event": None,
        "last_seen_at": (timezone.now() - timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
    }
    await get_channel_layer().group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [ghost]})
    (vehicle,) = (await _next(comm, "positions"))["vehicles"]
    assert vehicle["mission_id"] == 999_999 and "eta" not in vehicle
    await asyncio.sleep(0.5)
    assert reads == [[999_999]]  # read once, not again and again
    await comm.disconnect()
