"""Trust domains and bundles: the services' rules and audit events, the console page and its form errors,
and the SVID rules checked one by one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User

from missions.events import Actor
from missions.identity import services as identity_services
from missions.identity.selectors import trust_registry
from missions.identity.svid import SvidRefused, fingerprint_sha256, svid_verify
from missions.models import AuditEvent, Carrier
from missions.models.identity import TrustBundleCertificate
from tests.certificates import issue_certificate
from tests.conftest import verified_client
from tests.identity.conftest import BAD_SVIDS, DOMAIN_A, Pki
from tests.svid import spiffe_ca
from tms_console.domain import DomainError

pytestmark = pytest.mark.django_db


def test_good_svid_maps_to_carrier_and_vehicle(pki: Pki) -> None:
    svid = pki.svid()
    identity = svid_verify(
        svid.certificate, carrier_id=pki.carrier_a.pk, registry=trust_registry(), now=dt.datetime.now(dt.UTC)
    )
    assert (identity.carrier_id, identity.vehicle_id, identity.trust_domain) == (pki.carrier_a.pk, "TRK-A1", DOMAIN_A)
    assert identity.spiffe_id == "spiffe://carrier-a.example/vehicle/TRK-A1"
    assert identity.fingerprint == fingerprint_sha256(svid.certificate)


@pytest.mark.parametrize("case", [c for c in BAD_SVIDS if c != "another vehicle's SVID"])
def test_each_rule_names_its_reason(pki: Pki, case: str) -> None:
    make, reason = BAD_SVIDS[case]
    with pytest.raises(SvidRefused) as refused:
        svid_verify(
            make(pki).certificate, carrier_id=pki.carrier_a.pk, registry=trust_registry(), now=dt.datetime.now(dt.UTC)
        )
    assert refused.value.reason == reason


def test_a_service_path_is_not_a_vehicle_and_digital_signature_is_required(pki: Pki) -> None:
    now = dt.datetime.now(dt.UTC)
    registry = trust_registry()
    for kwargs, reason in (
        ({"uris": [f"spiffe://{DOMAIN_A}/ns/tms/sa/web"]}, "not-a-vehicle"),
        ({"digital_signature": False}, "key-usage"),
        ({"uris": ["https://carrier-a.example/vehicle/TRK-A1"]}, "not-spiffe-id"),
    ):
        with pytest.raises(SvidRefused) as refused:
            svid_verify(pki.svid(**kwargs).certificate, carrier_id=pki.carrier_a.pk, registry=registry, now=now)
        assert refused.value.reason == reason, kwargs


def test_bundle_changes_leave_audit_events(pki: Pki) -> None:
    actions = set(AuditEvent.objects.filter(carrier=pki.carrier_a).values_list("action", flat=True))
    assert {"carrier.trust_domain_set", "carrier.trust_bundle_added", "carrier.trust_bundle_retired"} <= actions
    added = AuditEvent.objects.filter(action="carrier.trust_bundle_added", carrier=pki.carrier_a).first()
    assert added is not None and len(added.after["fingerprint_sha256"]) == 64


def test_the_last_active_ca_of_a_carrier_requiring_svids_cannot_be_retired(pki: Pki) -> None:
    active = TrustBundleCertificate.objects.get(carrier=pki.carrier_a, retired_at__isnull=True)
    with pytest.raises(DomainError, match="last active CA"):
        identity_services.trust_bundle_retire(certificate_id=active.pk, actor=Actor.system("t"))


def test_a_trust_domain_belongs_to_one_carrier(pki: Pki) -> None:
    with pytest.raises(DomainError, match="another carrier"):
        identity_services.trust_domain_set(
            carrier_id=pki.carrier_b.pk, name=DOMAIN_A, svid_required=True, actor=Actor.system("t")
        )


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("not a certificate", "No PEM certificate found"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "could not be read"),
        ("leaf", "is not a CA certificate"),
    ],
)
def test_bad_pem_is_a_form_error_on_the_console_page(admin_user: User, pki: Pki, pem: str, message: str) -> None:
    if pem == "leaf":
        pem = pki.svid().pem
    client = verified_client(admin_user)
    response = client.post(f"/partners/carriers/{pki.carrier_a.pk}/identity/bundle/", {"pem": pem})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert TrustBundleCertificate.objects.filter(carrier=pki.carrier_a).count() == 2


def test_admin_registers_a_trust_domain_and_rotates_the_bundle_on_the_console(admin_user: User) -> None:
    carrier = Carrier.objects.create(name="Carrier C", slug="carrier-c")
    client = verified_client(admin_user)
    page = f"/partners/carriers/{carrier.pk}/identity/"
    bad = client.post(f"{page}trust-domain/", {"name": "Not A Domain!", "svid_required": "on"})
    assert bad.status_code == 400 and "Not a SPIFFE trust domain" in bad.content.decode()
    assert (
        client.post(f"{page}trust-domain/", {"name": "spiffe://carrier-c.example", "svid_required": "on"}).status_code
        == 302
    )
    old, new = spiffe_ca("carrier-c.example", "C old"), spiffe_ca("carrier-c.example", "C new")
    assert client.post(f"{page}bundle/", {"pem": old.pem + new.pem}).status_code == 302
    listing = client.get(page).content.decode()
    assert "carrier-c.example" in listing and "CN=C old" in listing and "CN=C new" in listing
    first = TrustBundleCertificate.objects.get(carrier=carrier, subject="CN=C old")
    assert client.post(f"{page}bundle/{first.pk}/retire/").status_code == 302
    second = TrustBundleCertificate.objects.get(carrier=carrier, subject="CN=C new")
    refused = client.post(f"{page}bundle/{second.pk}/retire/")
    assert refused.status_code == 409 and "last active CA" in refused.content.decode()
    first.refresh_from_db()
    assert first.retired_at is not None and first.retired_by == admin_user.get_username()


def test_a_non_ca_certificate_from_an_ordinary_pki_is_refused(pki: Pki) -> None:
    leaf, _ = issue_certificate("gateway")
    from cryptography.hazmat.primitives.serialization import Encoding

    with pytest.raises(DomainError, match="not a CA"):
        identity_services.trust_bundle_add(
            carrier_id=pki.carrier_a.pk, pem_text=leaf.public_bytes(Encoding.PEM).decode(), actor=Actor.system("t")
        )


def test_the_console_page_needs_the_platform_role(client: Any, pki: Pki) -> None:
    assert client.get(f"/partners/carriers/{pki.carrier_a.pk}/identity/").status_code in (302, 403)
