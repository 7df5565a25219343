"""Which client certificate belongs to a partner client (RFC 8705 §2.1, ``tls_client_auth``).

A carrier CA bundle at the edge only says that a certificate was issued by
some carrier's CA; it does not say by which carrier, nor for which client.
A client registers exactly one expected value of its certificate, as RFC
8705 §2.1.2 defines them (the subject DN in RFC 4514 form, or a dNSName,
uniformResourceIdentifier, iPAddress or rfc822Name SAN entry), or pins the
certificate itself by its SHA-256 thumbprint (``x5t#S256``, as the token's
``cnf`` claim writes it). A presented certificate is that client's only if
it matches.

``certificate_value_normalize`` turns what an administrator typed into the
stored form (or raises ``ValueError`` with a message meant for them);
``certificate_matches`` checks a presented certificate against it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, ObjectIdentifier

from missions.models.partner import CertificateKind

# RFC 4514 short names read in any letter case (cryptography alone takes only its own spelling).
_DN_NAMES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
}
_DN_READ = {spelling: oid for name, oid in _DN_NAMES.items() for spelling in (name, name.lower(), name.title())} | {
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
_DN_WRITE = {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.SERIAL_NUMBER: "serialNumber"}
_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_HEX_THUMBPRINT = re.compile(r"^[0-9a-f]{64}$")
_B64URL_THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_VALUE_LENGTH = 1024


def x5t_s256(der: bytes) -> str:
    """The ``x5t#S256`` confirmation value: base64url, unpadded, of SHA-256 over the DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def certificate_thumbprint(certificate: x509.Certificate) -> str:
    return x5t_s256(certificate.public_bytes(Encoding.DER))


def _dn_compact(value: str) -> str:
    """Drop spaces around unescaped ``,``, ``+`` and ``=`` ("CN = gateway-1, O = Carrier A").

    RFC 4514 §3 lets an implementation accept other DN string forms; spaces next to a separator are
    never part of a value (a significant one is escaped, ``\\ ``). The order stays as typed: RFC 4514
    writes the most specific RDN first (``openssl x509 -noout -subject -nameopt RFC2253``).
    """
    out: list[str] = []
    escaped = skip_spaces = False
    for char in value:
        if escaped:
            out.append(char)
            escaped = False
            continue
        if char == " " and skip_spaces:
            continue
        skip_spaces = False
        if char == "\\":
            escaped = True
        elif char in ",+=":
            while out and out[-1] == " " and not (len(out) > 1 and out[-2] == "\\"):
                out.pop()
            skip_spaces = True
        out.append(char)
    return "".join(out).strip()


def _dn_parse(value: str) -> x509.Name:
    try:
        name = x509.Name.from_rfc4514_string(_dn_compact(value), _DN_READ)
    except ValueError:
        raise ValueError(
            "Not a distinguished name in RFC 4514 form, such as 'CN=gateway-1,O=Carrier A,C=US' "
            "(openssl x509 -noout -subject -nameopt RFC2253 prints it)."
        ) from None
    if not name.rdns:
        raise ValueError("The subject DN is empty.")
    return name


def _dn_key(name: x509.Name) -> list[frozenset[tuple[str, str]]]:
    # RFC 4517 distinguishedNameMatch, approximated for the string attributes certificates carry:
    # the same attributes in the same order, values compared case-insensitively with runs of spaces folded.
    return [
        frozenset((attribute.oid.dotted_string, " ".join(str(attribute.value).split()).casefold()) for attribute in rdn)
        for rdn in name.rdns
    ]


def _thumbprint_normalize(value: str) -> str:
    if "-----BEGIN CERTIFICATE-----" in value:
        try:
            return certificate_thumbprint(x509.load_pem_x509_certificate(value.strip().encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            raise ValueError("The pasted PEM certificate could not be read.") from None
    compact = value.strip()
    if compact.lower().startswith("sha256 fingerprint="):  # as `openssl x509 -fingerprint -sha256` prints it
        compact = compact.partition("=")[2]
    hexadecimal = compact.replace(":", "").lower()
    if _HEX_THUMBPRINT.match(hexadecimal):
        return base64.urlsafe_b64encode(binascii.unhexlify(hexadecimal)).rstrip(b"=").decode("ascii")
    if _B64URL_THUMBPRINT.match(compact.rstrip("=")):
        return compact.rstrip("=")
    raise ValueError(
        "A SHA-256 thumbprint is 64 hexadecimal digits (colons allowed) or 43 base64url characters; "
        "a PEM certificate may be pasted instead."
    )


def certificate_value_normalize(kind: str, value: str) -> str:
    """The stored form of an expected certificate value; ``ValueError`` says what is wrong with it."""
    value = value.strip()
    if not value:
        raise ValueError("Enter the value the client's certificate will carry.")
    if len(value) > MAX_VALUE_LENGTH and kind != CertificateKind.X5T_S256:
        raise ValueError(f"At most {MAX_VALUE_LENGTH} characters.")
    if kind == CertificateKind.SUBJECT_DN:
        return _dn_parse(value).rfc4514_string(_DN_WRITE)
    if kind == CertificateKind.SAN_DNS:
        name = value.rstrip(".").lower()
        if len(name) > 253 or not _DNS_NAME.match(name):
            raise ValueError("Not a DNS name, such as 'gateway-1.carrier-a.example'.")
        return name
    if kind == CertificateKind.SAN_URI:
        parts = urlsplit(value)
        if not parts.scheme or not (parts.netloc or parts.path) or any(c.isspace() for c in value):
            raise ValueError("Not an absolute URI, such as 'spiffe://carrier-a.example/gateway'.")
        return value
    if kind == CertificateKind.SAN_IP:
        try:
            return str(ipaddress.ip_address(value))  # RFC 5952 form for IPv6
        except ValueError:
            raise ValueError("Not an IPv4 or IPv6 address.") from None
    if kind == CertificateKind.SAN_EMAIL:
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in value):
            raise ValueError("Not an e-mail address.")
        return f"{local}@{domain.lower()}"
    if kind == CertificateKind.X5T_S256:
        return _thumbprint_normalize(value)
    raise ValueError(f"Unknown certificate field {kind!r}.")


def _san_values(certificate: x509.Certificate, general_name: type[x509.GeneralName]) -> list[Any]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [entry.value for entry in extension.value if isinstance(entry, general_name)]


def certificate_matches(certificate: x509.Certificate, *, kind: str, value: str) -> bool:
    """Whether ``certificate`` carries the registered (normalized) ``value`` in the field ``kind``."""
    if kind == CertificateKind.X5T_S256:
        return hmac.compare_digest(certificate_thumbprint(certificate), value)
    if kind == CertificateKind.SUBJECT_DN:
        try:
            return _dn_key(certificate.subject) == _dn_key(_dn_parse(value))
        except ValueError:
            return False
    if kind == CertificateKind.SAN_DNS:
        return any(str(name).rstrip(".").lower() == value for name in _san_values(certificate, x509.DNSName))
    if kind == CertificateKind.SAN_URI:
        return value in _san_values(certificate, x509.UniformResourceIdentifier)
    if kind == CertificateKind.SAN_IP:
        # RFC 8705 §2.1.2: IP addresses compare in binary form.
        return ipaddress.ip_address(value) in _san_values(certificate, x509.IPAddress)
    if kind == CertificateKind.SAN_EMAIL:
        local, _, domain = value.rpartition("@")
        for address in _san_values(certificate, x509.RFC822Name):
            their_local, _, their_domain = str(address).rpartition("@")
            if their_local == local and their_domain.lower() == domain:
                return True
        return False
    return False
