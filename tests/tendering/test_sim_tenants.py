"""One simulator process serves several carriers under /carriers/<slug>/ (the seeded demo's wiring)."""

from __future__ import annotations

import httpx
import pytest

from missions.choices import CircuitState, TenderStatus
from missions.models import CarrierCircuit, Mission, Shipment
from tests.factories import CarrierFactory, ShipmentFactory, VehicleFactory
from tests.tendering.conftest import SimFactory
from tests.tendering.helpers import tender_to
from tms_console.demo import carrier_sim_client_secret

pytestmark = pytest.mark.django_db(transaction=True)


def _tenant_carrier(sim_url: str, slug: str, vehicles: list[str]):  # type: ignore[no-untyped-def]
    carrier = CarrierFactory(
        name=slug.title(),
        slug=slug,
        api_base_url=f"{sim_url}/carriers/{slug}",
        api_token_url=f"{sim_url}/oauth/token",
        api_client_id=slug,
        api_client_secret=carrier_sim_client_secret(slug),
        api_timeout_seconds=0.5,
        breaker_failure_threshold=2,
    )
    for vehicle in vehicles:
        VehicleFactory(carrier=carrier, external_id=vehicle)
    return carrier


def test_demo_carriers_share_one_simulator_with_their_own_trucks(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(
        secret_for=carrier_sim_client_secret, tenant_vehicles={"lonestar": ["LSA-101"], "sunbelt": ["SBD-201"]}
    )
    lonestar = _tenant_carrier(sim.url, "lonestar", ["LSA-101"])
    sunbelt = _tenant_carrier(sim.url, "sunbelt", ["SBD-201"])

    first = tender_to(shipment, lonestar)
    second_shipment = ShipmentFactory()
    second = tender_to(second_shipment, sunbelt)

    assert first.status == TenderStatus.ACCEPTED and second.status == TenderStatus.ACCEPTED
    assert Mission.objects.get(tender=first).vehicle.external_id == "LSA-101"  # type: ignore[union-attr]
    assert Mission.objects.get(tender=second).vehicle.external_id == "SBD-201"  # type: ignore[union-attr]
    assert {t.tenant for t in sim.state.tenders.values()} == {"lonestar", "sunbelt"}


def test_a_token_works_only_for_its_own_carrier(make_sim: SimFactory) -> None:
    sim = make_sim(secret_for=carrier_sim_client_secret)
    token = httpx.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("lonestar", carrier_sim_client_secret("lonestar")),
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{sim.url}/carriers/lonestar/health", headers=bearer).status_code == 200
    assert httpx.get(f"{sim.url}/carriers/sunbelt/health", headers=bearer).status_code == 401
    wrong = httpx.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("lonestar", carrier_sim_client_secret("sunbelt")),
    )
    assert wrong.status_code == 401


def test_faults_are_per_carrier(make_sim: SimFactory) -> None:
    sim = make_sim(
        secret_for=carrier_sim_client_secret, tenant_vehicles={"lonestar": ["LSA-101"], "sunbelt": ["SBD-201"]}
    )
    lonestar = _tenant_carrier(sim.url, "lonestar", ["LSA-101"])
    sunbelt = _tenant_carrier(sim.url, "sunbelt", ["SBD-201"])
    assert httpx.post(f"{sim.url}/carriers/lonestar/_faults", json={"error_burst": 100}).status_code == 200

    broken = tender_to(ShipmentFactory(), lonestar)
    healthy = tender_to(ShipmentFactory(), sunbelt)

    broken.refresh_from_db()
    assert broken.status == TenderStatus.FAILED and healthy.status == TenderStatus.ACCEPTED
    assert CarrierCircuit.objects.get(carrier=lonestar).state == CircuitState.OPEN
    assert CarrierCircuit.objects.get(carrier=sunbelt).state == CircuitState.CLOSED
