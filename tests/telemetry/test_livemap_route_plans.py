"""The live map draws a mission's verified signed route plan in place of the console's planned route."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission
from missions.routeplans import services as plan_services
from missions.routeplans.artifact import Submission
from missions.simulators.plan_signing import KeyPair, blob_sign, key_pair_generate, plan_bytes
from missions.telemetry.map_state import mission_routes
from tests.conftest import verified_client
from tests.factories import MissionFactory

PLAN = [[32.7767, -96.797], [31.5493, -97.1467], [30.2672, -97.7431]]  # Dallas - Waco - Austin (I-35)


def _verify(mission: Mission, pair: KeyPair, version: int, *, valid_for: timedelta = timedelta(hours=6)) -> None:
    now = timezone.now()
    artifact = plan_bytes(
        mission_id=mission.pk,
        version=version,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + valid_for,
        waypoints=PLAN if version > 1 else PLAN[:2],
    )
    outcome = plan_services.route_plan_submit(
        mission_id=mission.pk,
        carrier=mission.carrier,
        submission=Submission.of(
            artifact=artifact,
            signature_text=blob_sign(pair.private_pem, artifact),
            declared_sha256=hashlib.sha256(artifact).hexdigest(),
            declared_size=len(artifact),
        ),
        actor=Actor.for_carrier(mission.carrier),
    )
    assert outcome.plan is not None, outcome.refusal


@pytest.fixture
def pair(carrier_a: Carrier) -> KeyPair:
    keys = key_pair_generate()
    plan_services.signing_key_register(
        carrier_id=carrier_a.pk, name="plans", public_key=keys.public_pem, actor=Actor.system("test")
    )
    return keys


@pytest.mark.django_db
def test_the_latest_verified_plan_replaces_the_planned_route(carrier_a: Carrier, pair: KeyPair) -> None:
    with_plan = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE, last_lat=32.7, last_lon=-96.8)
    without = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE, last_lat=32.7, last_lon=-96.8)
    _verify(with_plan, pair, 1)
    _verify(with_plan, pair, 2)
    routes = {r.mission_id: r for r in mission_routes(lines=True)}  # every truck on the map
    planned = routes[with_plan.pk]
    assert planned.wire["points"] == PLAN and planned.points == tuple(tuple(p) for p in PLAN)
    assert planned.wire["basis"] == "verified plan v2"
    plan = planned.wire["verified_plan"]
    assert plan["version"] == 2 and plan["current"] is True and plan["label"] == "verified plan v2"
    assert plan["sha256"] == with_plan.route_plans.get(version=2).sha256
    assert plan["planned_basis"] == "corridor I-45 Dallas-Houston"
    assert 250 < planned.wire["km"] < 320  # Dallas - Waco - Austin, not Dallas - Houston
    assert routes[without.pk].wire["verified_plan"] is None
    assert routes[without.pk].wire["basis"] == "corridor I-45 Dallas-Houston"


@pytest.mark.django_db
def test_the_map_page_explains_the_verified_plan_line(dispatcher: User) -> None:
    page = verified_client(dispatcher).get("/map/")
    assert page.status_code == 200
    assert b"line-verified" in page.content and b"verified signed plan" in page.content
