"""The demo's onboarding carrier: seeded as a carrier would stand before certification, it certifies
against the demo's own carrier simulator (set up as ``make run`` sets it up), goes live and is tendered."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from missions.choices import CarrierStatus, TenderStatus
from missions.events import Actor
from missions.management.commands.run_carrier_sim import demo_carriers
from missions.management.demo_onboarding import DEMO_ONBOARDING
from missions.models import Carrier, CarrierMember, CarrierProfile, Mission
from missions.onboarding import certification, golive
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.factories import ShipmentFactory
from tests.tendering.helpers import tender_to
from tms_console.demo import demo_sandbox_credentials

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_sim() -> Iterator[CarrierSimulator]:
    secret_for, vehicles = demo_carriers()
    config = SimConfig(
        secret_for=secret_for,
        tenant_vehicles=vehicles,
        sandbox_credentials_for=demo_sandbox_credentials,
        policy={"accept": 1.0},
        seed=7,
    )
    sim = CarrierSimulator(config).start()
    yield sim
    sim.stop()


def test_the_seeded_onboarding_carrier_certifies_against_the_demo_simulator_goes_live_and_is_tendered(
    demo_sim: CarrierSimulator, live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PUBLIC_BASE_URL = live_server.url
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.EGRESS_ALLOW_HTTP = True
    settings.CERTIFICATION_TELEMETRY_SECONDS = 2
    settings.CERTIFICATION_LATENCY_P95_MS = 10_000
    settings.CARRIER_RETRY_BASE_SECONDS = settings.CARRIER_RETRY_CAP_SECONDS = 0.0
    monkeypatch.setenv("DEMO_PASSWORD", "seed-test-password-42")
    monkeypatch.setenv("CARRIER_SIM_URL", demo_sim.url)
    out = StringIO()

    call_command("seed_demo", stdout=out)

    assert f"{DEMO_ONBOARDING.lead}  (carrier portal of Prairie Autonomy LLC, onboarding)" in out.getvalue()
    carrier = Carrier.objects.get(slug=DEMO_ONBOARDING.slug)
    lead = User.objects.get(username=DEMO_ONBOARDING.lead)
    assert carrier.status == CarrierStatus.ONBOARDING
    assert CarrierMember.objects.get(user=lead).carrier_id == carrier.pk
    assert golive.golive_blockers(carrier.pk) == ["no passing certification for carrier API 1.1.0"]

    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(lead))
    run = certification.certification_run(run.pk)

    assert run.status == "passed", {c["name"]: c.get("detail") for c in run.checks if c["status"] != "passed"}
    golive.carrier_go_live(carrier_id=carrier.pk, actor=Actor.for_user(User.objects.get(username="demo-admin")))
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ACTIVE
    tender = tender_to(ShipmentFactory(), carrier)
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED and Mission.objects.filter(tender=tender).exists()

    # A re-seed makes nothing new and follows the simulator's URL.
    monkeypatch.setenv("CARRIER_SIM_URL", "http://127.0.0.1:8999")
    call_command("seed_demo", "--quiet-logins", stdout=StringIO())
    profile = CarrierProfile.objects.get(carrier=carrier)
    assert profile.sandbox_api_url == f"http://127.0.0.1:8999/carriers/{DEMO_ONBOARDING.slug}"
    assert Carrier.objects.filter(slug=DEMO_ONBOARDING.slug).count() == 1
