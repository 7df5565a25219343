"""Two carriers with their own SPIFFE trust domains and CAs, a mission of carrier A, and the broken SVIDs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from missions.events import Actor
from missions.identity import services as identity_services
from missions.identity.selectors import trust_registry_forget
from missions.identity.svid import SVID_REFUSED
from missions.models import Carrier, Mission
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.svid import Issued, spiffe_ca, vehicle_svid

DOMAIN_A = "carrier-a.example"
DOMAIN_B = "carrier-b.example"


@dataclass
class Pki:
    carrier_a: Carrier
    carrier_b: Carrier
    mission: Mission
    vehicle_id: str
    ca_a: Issued
    ca_a_old: Issued  # retired after ca_a was added: rotation with overlap
    ca_b: Issued

    def svid(self, **kwargs: Any) -> Issued:
        """A good SVID of the mission's vehicle (or broken as ``vehicle_svid`` is asked)."""
        return vehicle_svid(self.ca_a, DOMAIN_A, self.vehicle_id, **kwargs)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    trust_registry_forget()
    yield
    trust_registry_forget()


@pytest.fixture
def pki(db: Any) -> Pki:
    actor = Actor.system("test")
    carrier_a = CarrierFactory(name="Carrier A", slug="carrier-a")
    carrier_b = CarrierFactory(name="Carrier B", slug="carrier-b")
    ca_a_old, ca_a, ca_b = spiffe_ca(DOMAIN_A, "A old CA"), spiffe_ca(DOMAIN_A, "A CA"), spiffe_ca(DOMAIN_B)
    identity_services.trust_domain_set(carrier_id=carrier_a.pk, name=DOMAIN_A, svid_required=True, actor=actor)
    identity_services.trust_domain_set(carrier_id=carrier_b.pk, name=DOMAIN_B, svid_required=True, actor=actor)
    identity_services.trust_bundle_add(carrier_id=carrier_a.pk, pem_text=ca_a_old.pem, actor=actor)
    identity_services.trust_bundle_add(carrier_id=carrier_a.pk, pem_text=ca_a.pem, actor=actor)
    identity_services.trust_bundle_add(carrier_id=carrier_b.pk, pem_text=ca_b.pem, actor=actor)
    old = carrier_a.trust_bundle.get(subject="CN=A old CA")
    identity_services.trust_bundle_retire(certificate_id=old.pk, actor=actor)
    trust_registry_forget()  # on_commit does not run inside a test's transaction
    vehicle = VehicleFactory(carrier=carrier_a, external_id="TRK-A1")
    mission = MissionFactory(carrier=carrier_a, shipment=ShipmentFactory(), vehicle=vehicle)
    return Pki(carrier_a, carrier_b, mission, "TRK-A1", ca_a, ca_a_old, ca_b)


def _hours(n: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=n)


# name -> (SVID maker, the reason it is refused with)
BAD_SVIDS: dict[str, tuple[Callable[[Pki], Issued], str]] = {
    "expired": (lambda p: p.svid(not_before=_hours(-2), not_after=_hours(-1)), "expired"),
    "wrong trust domain": (lambda p: vehicle_svid(p.ca_a, "nobody.example", p.vehicle_id), "wrong-trust-domain"),
    "unknown CA": (lambda p: vehicle_svid(spiffe_ca(DOMAIN_A, "Rogue"), DOMAIN_A, p.vehicle_id), "unknown-ca"),
    "retired CA": (lambda p: vehicle_svid(p.ca_a_old, DOMAIN_A, p.vehicle_id), "retired-ca"),
    "another carrier's SVID": (lambda p: vehicle_svid(p.ca_b, DOMAIN_B, p.vehicle_id), "other-carrier"),
    "two SPIFFE IDs in the SAN": (
        lambda p: p.svid(uris=[f"spiffe://{DOMAIN_A}/vehicle/{p.vehicle_id}", f"spiffe://{DOMAIN_A}/vehicle/TRK-A2"]),
        "uri-san",
    ),
    "a CA certificate": (lambda p: p.svid(is_ca=True), "not-a-leaf"),
    "keyCertSign on the leaf": (lambda p: p.svid(cert_sign=True), "key-usage"),
    "another vehicle's SVID": (lambda p: vehicle_svid(p.ca_a, DOMAIN_A, "TRK-A9"), "vehicle-mismatch"),
}


def refused_count(reason: str, path: str) -> float:
    return SVID_REFUSED.labels(reason=reason, path=path)._value.get()
