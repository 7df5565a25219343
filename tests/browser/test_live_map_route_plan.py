"""The live map draws a carrier's verified signed route plan in place of the planned route, and says so."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions.events import Actor
from missions.routeplans import services as plan_services
from missions.routeplans.artifact import Submission
from missions.simulators.plan_signing import blob_sign, key_pair_generate, plan_bytes
from tests.browser.fleet import READ_ROUTES, routes_drawn, send, telemetry
from tests.browser.support import LIVE_TIMEOUT_MS, NetworkLog
from tests.browser.test_live_map import on_route, open_map
from tests.factories import CarrierFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PLAN = [[32.7767, -96.797], [32.3293, -96.6253], [31.5493, -97.1467], [30.2672, -97.7431]]


def test_the_verified_plan_is_drawn_and_labelled(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    carrier = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    mission = on_route(carrier, "LSA-301")
    plain = on_route(carrier, "LSA-302")
    pair = key_pair_generate()
    plan_services.signing_key_register(
        carrier_id=carrier.pk, name="plans", public_key=pair.public_pem, actor=Actor.system("test")
    )
    now = datetime.now(UTC)
    artifact = plan_bytes(
        mission_id=mission.pk,
        version=4,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(hours=8),
        waypoints=PLAN,
    )
    digest = hashlib.sha256(artifact).hexdigest()
    outcome = plan_services.route_plan_submit(
        mission_id=mission.pk,
        carrier=carrier,
        submission=Submission.of(
            artifact=artifact,
            signature_text=blob_sign(pair.private_pem, artifact),
            declared_sha256=digest,
            declared_size=len(artifact),
        ),
        actor=Actor.for_carrier(carrier),
    )
    assert outcome.plan is not None, outcome.refusal
    send(carrier, telemetry(mission, at=now, lat=32.3293, lon=-96.6253, speed_kph=90.0))
    send(carrier, telemetry(plain, at=now, lat=32.3293, lon=-96.6253, speed_kph=90.0))

    open_map(page, live_url, dispatcher, trucks_expected=2)
    page.wait_for_function(
        f"() => ((({READ_ROUTES})()['routes-verified']) || []).length === 1", timeout=LIVE_TIMEOUT_MS
    )
    drawn = routes_drawn(page)
    assert drawn["routes-verified"] == [PLAN]
    assert len(drawn["routes"]) == 1 and drawn["routes"][0] != PLAN  # the other truck: the console's route

    page.locator("#livemap-rows tr", has_text="LSA-301").click()
    detail = page.locator("#livemap-detail")
    expect(detail).to_contain_text("verified plan v4", timeout=LIVE_TIMEOUT_MS)
    expect(detail).to_contain_text(f"sha256 {digest[:12]}")
    expect(page.locator(".livemap-legend")).to_contain_text("verified signed plan")
    network.assert_loopback_only()
    assert network.page_errors == []
