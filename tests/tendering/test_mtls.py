"""Mutual TLS to a carrier: the client presents its certificate; without one the carrier refuses."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from missions.choices import TenderStatus
from missions.models import Shipment
from missions.models.outbound import OutboundCall
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import tender_to

pytestmark = pytest.mark.django_db(transaction=True)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    *, subject: str, issuer: tuple[x509.Name, Any] | None, ca: bool = False, server: bool = False
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: Any) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca_cert, ca_key = _issue(subject="Test carrier CA", issuer=None, ca=True)
    issuer = (ca_cert.subject, ca_key)
    server_cert, server_key = _issue(subject="127.0.0.1", issuer=issuer, server=True)
    client_cert, client_key = _issue(subject="tms-console", issuer=issuer)
    ca_path, _ = _write(tmp_path / "ca", ca_cert, ca_key)
    server_crt, server_k = _write(tmp_path / "server", server_cert, server_key)
    client_crt, client_k = _write(tmp_path / "client", client_cert, client_key)
    return {
        "ca": ca_path,
        "server_cert": server_crt,
        "server_key": server_k,
        "client_cert": client_crt,
        "client_key": client_k,
    }


def test_tender_over_mutual_tls(make_sim: SimFactory, shipment: Shipment, pki: dict[str, str], settings: Any) -> None:
    settings.CARRIER_CA_BUNDLE = pki["ca"]
    sim = make_sim(tls_cert=pki["server_cert"], tls_key=pki["server_key"], client_ca=pki["ca"])
    assert sim.url.startswith("https://")
    carrier = push_carrier(
        sim, name="Auto Secure", api_client_cert_path=pki["client_cert"], api_client_key_path=pki["client_key"]
    )

    tender = tender_to(shipment, carrier)

    assert tender.status == TenderStatus.ACCEPTED


def test_without_a_client_certificate_the_carrier_refuses(
    make_sim: SimFactory, shipment: Shipment, pki: dict[str, str], settings: Any
) -> None:
    settings.CARRIER_CA_BUNDLE = pki["ca"]
    sim = make_sim(tls_cert=pki["server_cert"], tls_key=pki["server_key"], client_ca=pki["ca"])
    carrier = push_carrier(sim, name="Auto Secure")

    tender = tender_to(shipment, carrier)

    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    assert sim.tender_count() == 0
    assert not OutboundCall.objects.filter(carrier=carrier, ok=True).exists()
