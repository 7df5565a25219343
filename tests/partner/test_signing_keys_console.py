"""The console page where administrators register and retire carriers' route-plan signing keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from django.contrib.auth.models import User

from missions.models import AuditEvent, Carrier, CarrierSigningKey
from missions.simulators.plan_signing import key_pair_generate
from tests.conftest import verified_client

PAGE = "/partners/signing-keys/"


def _pem(key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.django_db
def test_an_admin_registers_a_key_and_retires_it(admin_user: User, carrier_a: Carrier) -> None:
    client = verified_client(admin_user)
    pair = key_pair_generate()
    response = client.post(
        PAGE + "new/", {"carrier": carrier_a.pk, "name": "plans-2026", "public_key": pair.public_pem}
    )
    assert response.status_code == 302
    key = CarrierSigningKey.objects.get(carrier=carrier_a)
    assert key.name == "plans-2026" and key.active and key.created_by == admin_user
    registered = AuditEvent.objects.get(action="signing_key.registered")
    assert registered.after["key_id"] == key.key_id and registered.actor_label == admin_user.username
    page = client.get(PAGE)
    assert page.status_code == 200 and key.key_id[:16].encode() in page.content
    assert client.post(PAGE + f"{key.pk}/retire/").status_code == 302
    key.refresh_from_db()
    assert not key.active and AuditEvent.objects.filter(action="signing_key.retired", subject_id=key.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        ("not a key", "starts with -----BEGIN PUBLIC KEY-----"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "does not hold a readable public key"),
        (_pem(ec.generate_private_key(ec.SECP384R1()).public_key()), "Only ECDSA P-256"),
        (_pem(ed25519.Ed25519PrivateKey.generate().public_key()), "Only ECDSA P-256"),
        (key_pair_generate().private_pem.decode(), "This is a private key"),
    ],
    ids=["text", "bad-pem", "p384", "ed25519", "private-key"],
)
def test_a_bad_key_is_a_form_error(admin_user: User, carrier_a: Carrier, public_key: str, message: str) -> None:
    response = verified_client(admin_user).post(
        PAGE + "new/", {"carrier": carrier_a.pk, "name": "k", "public_key": public_key}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not CarrierSigningKey.objects.exists()


@pytest.mark.django_db
def test_one_key_belongs_to_one_carrier(admin_user: User, carrier_a: Carrier, carrier_b: Carrier) -> None:
    client = verified_client(admin_user)
    pem = key_pair_generate().public_pem
    assert client.post(PAGE + "new/", {"carrier": carrier_a.pk, "name": "a", "public_key": pem}).status_code == 302
    response = client.post(PAGE + "new/", {"carrier": carrier_b.pk, "name": "b", "public_key": pem})
    assert response.status_code == 400 and "already registered for another carrier" in response.content.decode()
    assert list(CarrierSigningKey.objects.values_list("carrier_id", flat=True)) == [carrier_a.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["dispatcher", "oncall", "readonly"])
def test_only_platform_admins_reach_the_page(request: pytest.FixtureRequest, persona: str, carrier_a: Carrier) -> None:
    user = request.getfixturevalue(persona)
    client = verified_client(user)
    assert client.get(PAGE).status_code == 403
    pem = key_pair_generate().public_pem
    assert client.post(PAGE + "new/", {"carrier": carrier_a.pk, "name": "x", "public_key": pem}).status_code == 403
    assert not CarrierSigningKey.objects.exists()
