"""The live map's ETA: distance left along the planned route at the recent speed, against the delivery window."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from missions.routes import Polyline
from missions.telemetry.map_eta import (
    MIN_SPEED_KPH,
    PLANNING_SPEED_KPH,
    SPEED_TAU_SECONDS,
    EtaTracker,
    MissionRoute,
    epoch_s,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
# Due south along a meridian: 1 degree of latitude is 111.2 km on the 6371 km sphere.
LINE = Polyline([(33.0, -97.0), (32.0, -97.0), (31.0, -97.0)])
KM_PER_DEG = LINE.length_km / 2
MARGIN_S = 1800.0


def route(*, window_end: datetime, carrier_eta: datetime | None = None) -> MissionRoute:
    return MissionRoute(
        mission_id=7,
        points=tuple(LINE.points),
        destination=(31.0, -97.0),
        window_end_s=window_end.timestamp(),
        carrier_eta_s=carrier_eta.timestamp() if carrier_eta else None,
        wire={"mission_id": 7},
    )


def report(at: datetime, *, lat: float, lon: float = -97.0, speed_kph: float | None = 90.0) -> dict[str, Any]:
    return {
        "mission_id": 7,
        "lat": lat,
        "lon": lon,
        "speed_kph": speed_kph,
        "last_seen_at": at.isoformat().replace("+00:00", "Z"),
    }


def eta_of(position: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(epoch_s(position["eta"]), UTC)


def test_a_new_truck_is_estimated_at_the_planning_speed_from_the_rest_of_its_route() -> None:
    tracker = EtaTracker()
    tracker.routes_add([route(window_end=T0 + timedelta(hours=3))])
    position = report(T0, lat=32.5)  # half way: 1.5 degrees (167 km) left
    assert tracker.observe(position, margin_s=MARGIN_S)
    remaining = 1.5 * KM_PER_DEG
    assert position["eta_basis"] == "route"
    assert position["remaining_km"] == pytest.approx(remaining, abs=0.2)
    expected = T0 + timedelta(hours=remaining / PLANNING_SPEED_KPH)
    assert abs((eta_of(position) - expected).total_seconds()) <= 1
    # Arrives about 2 h 05 min after T0, the window ends at 3 h: 55 min early, more than the 30 min margin.
    assert position["late_s"] == pytest.approx((expected - (T0 + timedelta(hours=3))).total_seconds(), abs=1)
    assert position["at_risk"] is False


def test_recent_speed_follows_the_reports_and_makes_a_slow_truck_late() -> None:
    tracker = EtaTracker()
    tracker.routes_add([route(window_end=T0 + timedelta(hours=3))])
    lat = 32.9
    # Twenty minutes crawling at 30 km/h (one report a second): the average falls towards 30.
    for second in range(1, 1201):
        lat -= 30.0 / 3600 / KM_PER_DEG
        position = report(T0 + timedelta(seconds=second), lat=lat, speed_kph=30.0)
        tracker.observe(position, margin_s=MARGIN_S)
    expected_speed = 30.0 + (PLANNING_SPEED_KPH - 30.0) * math.exp(-1200 / SPEED_TAU_SECONDS)
    remaining = (lat - 31.0) * KM_PER_DEG
    at = T0 + timedelta(seconds=1200)
    expected_eta = at + timedelta(hours=remaining / expected_speed)
    assert abs((eta_of(position) - expected_eta).total_seconds()) <= 30
    late_min = (expected_eta - (T0 + timedelta(hours=3))).total_seconds() / 60
    assert late_min > 0 and position["late_s"] == pytest.approx(late_min * 60, abs=30)
    assert position["at_risk"] is True


def test_a_parked_truck_is_assumed_to_crawl_not_to_stand_forever() -> None:
    tracker = EtaTracker()
    tracker.routes_add([route(window_end=T0 + timedelta(hours=30))])
    for minute in range(0, 121):  # two hours at 0 km/h
        position = report(T0 + timedelta(minutes=minute), lat=32.0, speed_kph=0.0)
        tracker.observe(position, margin_s=MARGIN_S)
    at = T0 + timedelta(minutes=120)
    expected = at + timedelta(hours=KM_PER_DEG / MIN_SPEED_KPH)
    assert abs((eta_of(position) - expected).total_seconds()) <= 60


def test_a_margin_flags_a_truck_that_is_on_time_with_little_to_spare() -> None:
    tracker = EtaTracker()
    remaining_h = 1.5 * KM_PER_DEG / PLANNING_SPEED_KPH
    tracker.routes_add([route(window_end=T0 + timedelta(hours=remaining_h, minutes=10))])
    position = report(T0, lat=32.5)
    tracker.observe(position, margin_s=MARGIN_S)
    assert -11 * 60 <= position["late_s"] <= -9 * 60  # ten minutes to spare
    assert position["at_risk"] is True  # less than the 30-minute margin
    tracker.observe(report(T0, lat=32.5), margin_s=0.0)
    assert tracker.latest(7)["at_risk"] is False  # without a margin it is on time


def test_off_its_route_the_carriers_eta_is_used_when_there_is_one() -> None:
    carrier_eta = T0 + timedelta(hours=5)
    tracker = EtaTracker()
    tracker.routes_add([route(window_end=T0 + timedelta(hours=4), carrier_eta=carrier_eta)])
    position = report(T0, lat=32.0, lon=-96.0)  # about 94 km east of the line
    tracker.observe(position, margin_s=MARGIN_S)
    assert position["eta_basis"] == "carrier" and position["remaining_km"] is None
    assert eta_of(position) == carrier_eta and position["late_s"] == 3600 and position["at_risk"] is True

    without = EtaTracker()
    without.routes_add([route(window_end=T0 + timedelta(hours=4))])
    position = report(T0, lat=32.0, lon=-96.0)
    without.observe(position, margin_s=MARGIN_S)
    assert position["eta_basis"] == "direct"
    assert 130 < position["remaining_km"] < 150  # straight to Hillsboro-ish (31.0, -97.0)


def test_arrival_and_an_unknown_route() -> None:
    tracker = EtaTracker()
    position = report(T0, lat=32.0)
    assert tracker.observe(position, margin_s=MARGIN_S) is False  # the route is not known yet
    assert "eta" not in position
    tracker.routes_add([route(window_end=T0 + timedelta(hours=1))])
    at_end = report(T0 + timedelta(seconds=1), lat=31.0)
    assert tracker.observe(at_end, margin_s=MARGIN_S) is True
    assert at_end["remaining_km"] == 0.0 and eta_of(at_end) == T0 + timedelta(seconds=1)


def test_an_older_report_does_not_replace_the_latest_estimate_and_trucks_are_forgotten() -> None:
    tracker = EtaTracker()
    tracker.routes_add([route(window_end=T0 + timedelta(hours=3))])
    tracker.observe(report(T0 + timedelta(seconds=10), lat=32.0), margin_s=MARGIN_S)
    latest = tracker.latest(7)
    older = report(T0, lat=32.9)
    tracker.observe(older, margin_s=MARGIN_S)
    assert tracker.latest(7) == latest and older["remaining_km"] > latest["remaining_km"]
    tracker.forget_before((T0 + timedelta(seconds=5)).timestamp())
    assert tracker.tracking(7) and 7 in tracker.routes
    tracker.forget_before((T0 + timedelta(minutes=5)).timestamp(), keep=[7])
    assert tracker.tracking(7)
    tracker.forget_before((T0 + timedelta(minutes=5)).timestamp())
    assert not tracker.tracking(7) and 7 not in tracker.routes and tracker.latest(7) == {}
