"""Registered client certificates (RFC 8705 §2.1.2): what an administrator may type, and what matches it."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from missions.models.partner import CertificateKind
from missions.partner.certificates import certificate_matches, certificate_thumbprint, certificate_value_normalize


def _certificate(subject: x509.Name, san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Carrier Test CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(key, hashes.SHA256())


SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Carrier A, Inc"),
        x509.NameAttribute(NameOID.COMMON_NAME, "gateway-1"),
    ]
)
SAN: list[x509.GeneralName] = [
    x509.DNSName("Gateway-1.Carrier-A.example"),
    x509.UniformResourceIdentifier("spiffe://carrier-a.example/gateway/1"),
    x509.IPAddress(ipaddress.ip_address("2001:db8::10")),
    x509.RFC822Name("fleet-ops@Carrier-A.example"),
]
CERT = _certificate(SUBJECT, SAN)
OTHER = _certificate(
    x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.COMMON_NAME, "gateway-1")]),
    [
        x509.DNSName("gateway-1.carrier-b.example"),
        x509.UniformResourceIdentifier("spiffe://carrier-b.example/gateway/1"),
    ],
)


def _matches(certificate: x509.Certificate, kind: str, typed: str) -> bool:
    return certificate_matches(certificate, kind=kind, value=certificate_value_normalize(kind, typed))


@pytest.mark.parametrize(
    ("kind", "typed"),
    [
        (CertificateKind.SUBJECT_DN, "CN=gateway-1,O=Carrier A\\, Inc,C=US"),
        (CertificateKind.SUBJECT_DN, "cn=GATEWAY-1, o=carrier a\\,  inc, c=us"),  # case and spaces do not matter
        (CertificateKind.SAN_DNS, "gateway-1.carrier-a.example."),
        (CertificateKind.SAN_URI, "spiffe://carrier-a.example/gateway/1"),
        (CertificateKind.SAN_IP, "2001:0db8:0000::0010"),  # compared as an address, not as text
        (CertificateKind.SAN_EMAIL, "fleet-ops@carrier-a.EXAMPLE"),
        (CertificateKind.X5T_S256, certificate_thumbprint(CERT)),
        (CertificateKind.X5T_S256, CERT.fingerprint(hashes.SHA256()).hex(":").upper()),
        (CertificateKind.X5T_S256, "SHA256 Fingerprint=" + CERT.fingerprint(hashes.SHA256()).hex(":")),
        (CertificateKind.X5T_S256, CERT.public_bytes(serialization.Encoding.PEM).decode()),
    ],
)
def test_the_registered_value_matches_its_certificate_only(kind: str, typed: str) -> None:
    assert _matches(CERT, kind, typed)
    assert not _matches(OTHER, kind, typed)


def test_the_subject_dn_must_match_whole_and_in_order() -> None:
    assert not _matches(CERT, CertificateKind.SUBJECT_DN, "CN=gateway-1")
    assert not _matches(CERT, CertificateKind.SUBJECT_DN, "C=US,O=Carrier A\\, Inc,CN=gateway-1")


def test_a_certificate_without_the_san_entry_does_not_match() -> None:
    bare = _certificate(SUBJECT)
    for kind, typed in [
        (CertificateKind.SAN_DNS, "gateway-1.carrier-a.example"),
        (CertificateKind.SAN_URI, "spiffe://carrier-a.example/gateway/1"),
        (CertificateKind.SAN_IP, "2001:db8::10"),
        (CertificateKind.SAN_EMAIL, "fleet-ops@carrier-a.example"),
    ]:
        assert not _matches(bare, kind, typed)


@pytest.mark.parametrize(
    ("kind", "typed", "message"),
    [
        (CertificateKind.SUBJECT_DN, "/C=US/O=Carrier A/CN=gateway-1", "RFC 4514"),
        (CertificateKind.SUBJECT_DN, "gateway-1", "RFC 4514"),
        (CertificateKind.SAN_DNS, "not a host", "DNS name"),
        (CertificateKind.SAN_URI, "carrier-a gateway", "absolute URI"),
        (CertificateKind.SAN_IP, "10.0.0.300", "IPv4 or IPv6"),
        (CertificateKind.SAN_EMAIL, "fleet-ops", "e-mail"),
        (CertificateKind.X5T_S256, "ab:cd", "64 hexadecimal digits"),
        (CertificateKind.X5T_S256, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----", "PEM"),
        (CertificateKind.SAN_DNS, "   ", "Enter the value"),
    ],
)
def test_values_that_cannot_match_are_refused_with_a_reason(kind: str, typed: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        certificate_value_normalize(kind, typed)


@given(st.binary(min_size=32, max_size=32), st.sampled_from(["", ":"]), st.booleans())
def test_a_thumbprint_reads_the_same_in_every_spelling(digest: bytes, separator: str, upper: bool) -> None:
    import base64

    hexadecimal = digest.hex(separator) if separator else digest.hex()
    hexadecimal = hexadecimal.upper() if upper else hexadecimal
    b64url = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert certificate_value_normalize(CertificateKind.X5T_S256, hexadecimal) == b64url
    assert certificate_value_normalize(CertificateKind.X5T_S256, b64url) == b64url
    assert certificate_value_normalize(CertificateKind.X5T_S256, b64url + "=") == b64url
