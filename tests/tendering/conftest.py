"""Fixtures for tendering tests: real carrier simulators over HTTP on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache

from missions.models import Carrier, Shipment
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.factories import CarrierFactory, ShipmentFactory, VehicleFactory

SimFactory = Callable[..., CarrierSimulator]


@pytest.fixture(autouse=True)
def _fast_retries(settings: Any) -> Iterator[None]:
    # No real sleeping between retries; the count and the idempotency key are what matter here.
    settings.CARRIER_RETRY_ATTEMPTS = 3
    settings.CARRIER_RETRY_BASE_SECONDS = 0.0
    settings.CARRIER_RETRY_CAP_SECONDS = 0.0
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    """Start simulators on port 0 (a free port chosen by the OS); all are stopped after the test."""
    started: list[CarrierSimulator] = []

    def _make(**config: Any) -> CarrierSimulator:
        config.setdefault("policy", {"accept": 1.0})
        config.setdefault("seed", 7)
        config.setdefault("vehicles", ["SIM-001", "SIM-002"])
        config.setdefault("timeout_hold_seconds", 3.0)
        sim = CarrierSimulator(SimConfig(**config)).start()
        started.append(sim)
        return sim

    yield _make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: SimFactory) -> CarrierSimulator:
    return make_sim()


def push_carrier(sim: CarrierSimulator, *, name: str, **overrides: Any) -> Carrier:
    """An autonomous carrier whose API is ``sim``, with its simulator vehicles registered."""
    fields: dict[str, Any] = {
        "name": name,
        "slug": name.lower().replace(" ", "-"),
        "api_base_url": sim.url,
        "api_client_id": sim.state.config.client_id,
        "api_client_secret": sim.state.config.client_secret,
        "api_timeout_seconds": 0.5,
        "breaker_failure_threshold": 3,
        "breaker_reset_seconds": 30,
        "max_concurrent_calls": 4,
        "tender_expiry_seconds": 600,
    }
    fields.update(overrides)
    carrier = CarrierFactory(**fields)
    for vehicle_id in sim.state.config.vehicles:
        VehicleFactory(carrier=carrier, external_id=vehicle_id)
    return carrier


@pytest.fixture
def shipment(db: Any) -> Shipment:
    return ShipmentFactory(target_rate_usd=Decimal("1450.00"))
