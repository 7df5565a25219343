"""Planned routes: corridor stretches, the great-circle fallback, projection onto a polyline, and assignment."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from missions import services
from missions.choices import MissionStatus, OfferKind
from missions.events import Actor
from missions.models import AuditEvent, Mission, haversine_km
from missions.routes import (
    CORRIDOR_SNAP_KM,
    GREAT_CIRCLE_BASIS,
    GREAT_CIRCLE_STEP_KM,
    Polyline,
    corridor_polylines,
    great_circle_points,
    route_plan,
)
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, TenderFactory, VehicleFactory

CHICAGO = (41.8781, -87.6298)
LOS_ANGELES = (34.0522, -118.2437)
ST_LOUIS = (38.6270, -90.1994)
NEW_YORK = (40.7128, -74.0060)
BOSTON = (42.3601, -71.0589)
CHICAGO_LA = "I-55/I-44/I-40/I-15 Chicago-Los Angeles"


def test_the_playbook_lane_follows_its_corridor_end_to_end() -> None:
    route = route_plan(CHICAGO, LOS_ANGELES)
    assert route.basis == f"corridor {CHICAGO_LA}" and route.is_corridor
    assert route.points[0] == CHICAGO and route.points[-1] == LOS_ANGELES
    # Through the waypoints in driving order: St. Louis before Albuquerque before Barstow.
    order = [route.points.index(p) for p in (ST_LOUIS, (35.0844, -106.6504), (34.8958, -117.0173))]
    assert order == sorted(order)
    # Longer than the straight line (2,800 km), about the road distance (3,240 km).
    assert haversine_km(*CHICAGO, *LOS_ANGELES) < route.km
    assert 3000 <= route.km <= 3260


def test_the_reverse_lane_runs_the_corridor_backwards() -> None:
    there, back = route_plan(CHICAGO, LOS_ANGELES), route_plan(LOS_ANGELES, CHICAGO)
    assert back.points == tuple(reversed(there.points))
    assert back.km == pytest.approx(there.km, abs=0.2)


def test_a_lane_along_part_of_a_corridor_takes_that_stretch_from_near_its_ends() -> None:
    # A warehouse in Joliet's suburbs to one west of St. Louis: both a little off the corridor's line.
    origin, destination = (41.60, -88.20), (38.60, -90.50)
    route = route_plan(origin, destination)
    assert route.basis == f"corridor {CHICAGO_LA}"
    assert route.points[0] == origin and route.points[-1] == destination
    assert (40.4842, -88.9937) in route.points and (39.7817, -89.6501) in route.points  # Bloomington, Springfield
    assert CHICAGO not in route.points and (37.9514, -91.7713) not in route.points  # not beyond its ends
    assert 380 <= route.km <= 480


def test_no_corridor_nearby_means_a_great_circle_line_said_to_be_one() -> None:
    route = route_plan(NEW_YORK, BOSTON)
    assert route.basis == GREAT_CIRCLE_BASIS and not route.is_corridor
    assert route.points[0] == NEW_YORK and route.points[-1] == BOSTON
    assert route.km == pytest.approx(haversine_km(*NEW_YORK, *BOSTON), rel=0.001)
    assert all(haversine_km(*a, *b) <= GREAT_CIRCLE_STEP_KM + 0.1 for a, b in itertools.pairwise(route.points))


def test_a_corridor_that_runs_the_wrong_way_or_too_far_is_not_taken() -> None:
    # Chicago -> St. Louis -> back north is not a route to Milwaukee; Denver is nowhere near a corridor.
    assert route_plan(ST_LOUIS, (43.0389, -87.9065)).basis == GREAT_CIRCLE_BASIS
    far_origin = (39.7392, -104.9903)  # Denver
    assert route_plan(far_origin, LOS_ANGELES).basis == GREAT_CIRCLE_BASIS
    # Just inside and just outside the snapping distance, due north of Chicago (1 degree is 111.2 km).
    inside = (CHICAGO[0] + (CORRIDOR_SNAP_KM - 5) / 111.2, CHICAGO[1])
    outside = (CHICAGO[0] + (CORRIDOR_SNAP_KM + 5) / 111.2, CHICAGO[1])
    assert route_plan(inside, LOS_ANGELES).basis == f"corridor {CHICAGO_LA}"
    assert route_plan(outside, LOS_ANGELES).basis == GREAT_CIRCLE_BASIS


latitudes = st.floats(min_value=25.0, max_value=49.0, allow_nan=False)
longitudes = st.floats(min_value=-124.0, max_value=-67.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(latitudes, longitudes, latitudes, longitudes)
def test_every_planned_route_runs_from_origin_to_destination(
    o_lat: float, o_lon: float, d_lat: float, d_lon: float
) -> None:
    origin, destination = (round(o_lat, 5), round(o_lon, 5)), (round(d_lat, 5), round(d_lon, 5))
    route = route_plan(origin, destination)
    assert len(route.points) >= 2
    assert route.points[0] == origin and route.points[-1] == destination
    assert route.km + 0.5 >= haversine_km(*origin, *destination)  # never shorter than the straight line
    assert route.km == pytest.approx(Polyline(route.points).length_km, abs=0.1)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(corridor_polylines())), st.floats(min_value=0.0, max_value=1.0))
def test_a_point_on_a_polyline_is_located_where_it_lies(name: str, share: float) -> None:
    line = corridor_polylines()[name]
    km = share * line.length_km
    lat, lon = line.at(km)
    found = line.locate(lat, lon)
    assert found.offset_km < 0.01
    assert found.along_km == pytest.approx(km, abs=0.5)
    # With a hint from a neighbouring segment the answer is the same.
    assert line.locate(lat, lon, hint=max(0, found.segment - 1)).along_km == pytest.approx(found.along_km, abs=0.01)
    # A wrong hint falls back to the whole line.
    assert line.locate(lat, lon, hint=len(line.points) - 2 if found.segment < 3 else 0).along_km == pytest.approx(
        found.along_km, abs=0.01
    )


def test_a_point_off_the_line_is_measured_off_it() -> None:
    line = Polyline([(32.0, -97.0), (31.0, -97.0)])  # due south, about 110 km
    found = line.locate(31.5, -96.5)  # about 47 km east of the middle
    assert found.along_km == pytest.approx(line.length_km / 2, abs=0.5)
    assert found.offset_km == pytest.approx(47.2, abs=1.0)
    assert line.locate(33.0, -97.0).along_km == 0.0  # before the start: clamped to it


def test_great_circle_points_stay_on_the_circle() -> None:
    points = great_circle_points(NEW_YORK, LOS_ANGELES)
    direct = haversine_km(*NEW_YORK, *LOS_ANGELES)
    assert sum(haversine_km(*a, *b) for a, b in itertools.pairwise(points)) == pytest.approx(direct, rel=1e-6)


# --- Assignment -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_mission_keeps_its_planned_route_from_assignment() -> None:
    carrier = CarrierFactory(operating_regions=["IL", "MO", "OK", "TX", "NM", "AZ", "CA"])
    VehicleFactory(carrier=carrier, external_id="TAL-401")
    shipment = ShipmentFactory(
        origin_lat=CHICAGO[0],
        origin_lon=CHICAGO[1],
        origin_region="IL",
        destination_lat=LOS_ANGELES[0],
        destination_lon=LOS_ANGELES[1],
        destination_region="CA",
    )
    tender = TenderFactory(shipment=shipment, carrier=carrier, status="sent")
    services.offer_record(
        tender_id=tender.pk,
        actor=Actor.for_carrier(carrier),
        kind=OfferKind.ACCEPT,
        vehicle_external_id="TAL-401",
        eta=timezone.now() + timedelta(hours=40),
    )
    mission = Mission.objects.get(tender=tender)
    assert mission.planned_route_basis == f"corridor {CHICAGO_LA}"
    assert [tuple(p) for p in mission.planned_route] == list(route_plan(CHICAGO, LOS_ANGELES).points)
    assert mission.planned_route_km == route_plan(CHICAGO, LOS_ANGELES).km
    created = AuditEvent.objects.get(action="mission.created", mission=mission)
    assert created.after["planned_route"] == {
        "km": mission.planned_route_km,
        "basis": mission.planned_route_basis,
        "points": len(mission.planned_route),
    }


@pytest.mark.django_db
def test_a_failover_mission_is_routed_from_where_the_truck_was_last_seen() -> None:
    shipment = ShipmentFactory(
        origin_lat=CHICAGO[0], origin_lon=CHICAGO[1], destination_lat=LOS_ANGELES[0], destination_lon=LOS_ANGELES[1]
    )
    # The first truck went silent near Oklahoma City and was handed over.
    MissionFactory(shipment=shipment, status=MissionStatus.HANDED_OVER, last_lat=35.4676, last_lon=-97.5164)
    fallback = CarrierFactory(kind="human_driven", max_autonomy_level=0, is_fallback=True)
    tender = TenderFactory(shipment=shipment, carrier=fallback, status="sent", is_fallback=True)
    services.offer_record(tender_id=tender.pk, actor=Actor.for_carrier(fallback), kind=OfferKind.ACCEPT)
    mission = Mission.objects.get(tender=tender)
    assert mission.planned_route[0] == [35.4676, -97.5164] and mission.planned_route[-1] == list(LOS_ANGELES)
    assert mission.planned_route_basis == f"corridor {CHICAGO_LA}"
    assert mission.planned_route_km is not None and 1900 <= mission.planned_route_km <= 2100
