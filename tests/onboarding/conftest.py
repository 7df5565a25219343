"""Shared fixtures: the carrier simulator as a sandbox, a carrier manager, and a carrier onboarding with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from missions.events import Actor
from missions.models import Carrier, CarrierProfile
from missions.onboarding import services
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.conftest import make_user, verified_client
from tests.onboarding.test_portal import _accept, _invite
from tms_console.roles import CARRIER_MANAGER


@pytest.fixture
def sandbox(settings: Any) -> Iterator[CarrierSimulator]:
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.EGRESS_ALLOW_HTTP = True
    # A loaded test machine is not a slow sandbox: only the latency test sets a tight bound.
    settings.CERTIFICATION_LATENCY_P95_MS = 10_000
    sim = CarrierSimulator(SimConfig(policy={"accept": 1.0}, seed=7, vehicles=["SIM-001"])).start()
    yield sim
    sim.stop()


@pytest.fixture
def manager(db: Any) -> User:
    return make_user("carol", CARRIER_MANAGER)


@pytest.fixture
def carrier(manager: User, sandbox: CarrierSimulator, live_server: Any, settings: Any) -> Carrier:
    """A carrier onboarding with the simulator as its sandbox, set up as its staff would: the sandbox's
    credentials for our API issued in the portal and put into the sandbox, which reaches the console
    (a live server) for the carrier's side of certification."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.CERTIFICATION_TELEMETRY_SECONDS = 1
    _accept(_invite(verified_client(manager)))
    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")
    CarrierProfile.objects.filter(carrier=carrier).update(
        sandbox_api_url=sandbox.url,
        sandbox_client_id="sim-carrier",
        sandbox_client_secret="sim-secret",
        telemetry_rate_hz=5.0,
    )
    sandbox_configure(sandbox, carrier)
    return carrier


def sandbox_configure(sim: CarrierSimulator, carrier: Carrier) -> None:
    """Issue the carrier's sandbox credentials for our API and put them into ``sim`` (5 samples a second)."""
    issued = services.sandbox_credentials_issue(carrier_id=carrier.pk, actor=Actor.system("test"))
    sim.sandbox_set(
        client_id=issued.client_id,
        client_secret=issued.client_secret,
        webhook_secret=issued.webhook_secret,
        telemetry_rate_hz=5.0,
    )
