"""X.509-SVID checks for vehicles (SPIFFE X509-SVID standard, sections 4 and 5).

A vehicle's SVID is a leaf certificate whose only URI SAN is
``spiffe://<its carrier's trust domain>/vehicle/<vehicle id>``, chained to one
of the CA certificates in that carrier's trust bundle. ``svid_verify`` checks,
in this order, and names the first rule broken (``SvidRefused.reason``):

1. exactly one URI SAN, and it is a SPIFFE ID (section 5.2);
2. a leaf: basic constraints ``cA`` false, key usage present and critical with
   ``digitalSignature`` and without ``keyCertSign`` / ``cRLSign`` (sections 4.1,
   4.3, 5.2); an extended key usage, when present, lists client authentication;
3. within its validity period;
4. its trust domain is the carrier's (a trust domain registered to another
   carrier is ``other-carrier``, one nobody registered is ``wrong-trust-domain``);
5. the path is ``/vehicle/<id>``;
6. RFC 5280 path validation against the carrier's active bundle certificates
   (cryptography's verifier); a chain to a retired one is ``retired-ca``, to none
   of them ``unknown-ca``.

The ID is parsed by the ``spiffe`` package; the certificate by ``cryptography``.
Nothing here reads the database: the caller passes the ``TrustRegistry``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import Counter
from spiffe import SpiffeId
from spiffe.errors import PySpiffeError

VEHICLE_PATH_PREFIX = "/vehicle/"

# Every reason a presented identity is refused: the problem document's ``reason`` and the counter's label.
REASONS: dict[str, str] = {
    "required": "this carrier's telemetry needs a vehicle SVID and none was presented",
    "malformed": "the forwarded certificate could not be read",
    "uri-san": "an X.509-SVID carries exactly one URI SAN, a SPIFFE ID",
    "not-spiffe-id": "the URI SAN is not a SPIFFE ID",
    "not-a-leaf": "the certificate is a CA certificate, not a leaf SVID",
    "key-usage": "a leaf SVID has a critical key usage with digitalSignature and without keyCertSign or cRLSign",
    "extended-key-usage": "the extended key usage does not allow client authentication",
    "expired": "the SVID has expired",
    "not-yet-valid": "the SVID is not valid yet",
    "wrong-trust-domain": "the SPIFFE ID is not in this carrier's trust domain",
    "other-carrier": "the SVID belongs to another carrier's trust domain",
    "not-a-vehicle": "the SPIFFE ID does not name a vehicle (spiffe://<trust domain>/vehicle/<id>)",
    "unknown-ca": "the SVID does not chain to a CA certificate of this carrier's trust bundle",
    "retired-ca": "the SVID was issued by a CA certificate this carrier retired",
    "vehicle-mismatch": "the telemetry names another vehicle than the SVID",
    "bad-signature": "the message signature does not verify with the SVID's key",
}

SVID_REFUSED = Counter(
    "tms_vehicle_svid_refused",
    "Telemetry refused for the vehicle identity it presented (or failed to present), by reason and path",
    ["reason", "path"],
)


class SvidRefused(Exception):
    """A presented (or missing) vehicle identity that is refused; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    @property
    def status(self) -> int:
        # No identity at all is an authentication problem; a refused one is a permission problem.
        return 401 if self.reason == "required" else 403

    @property
    def code(self) -> str:
        return "vehicle-identity-required" if self.reason == "required" else "vehicle-identity-refused"

    def count(self, path: str) -> None:
        SVID_REFUSED.labels(reason=self.reason, path=path).inc()


@dataclass(frozen=True)
class VehicleIdentity:
    """Who a valid SVID says it is: a vehicle of one carrier, and the certificate that says so."""

    spiffe_id: str
    trust_domain: str
    vehicle_id: str
    carrier_id: int
    fingerprint: str  # "sha256:<hex of SHA-256 over the DER certificate>"
    not_after: dt.datetime


@dataclass
class TrustRegistry:
    """Every registered trust domain and bundle certificate, as one snapshot the checks read."""

    # trust domain name -> carrier id
    domains: dict[str, int] = field(default_factory=dict)
    # carrier id -> (trust domain name, SVID required)
    carriers: dict[int, tuple[str, bool]] = field(default_factory=dict)
    active: dict[int, list[x509.Certificate]] = field(default_factory=dict)
    retired: dict[int, list[x509.Certificate]] = field(default_factory=dict)

    def required(self, carrier_id: int) -> bool:
        entry = self.carriers.get(carrier_id)
        return entry is not None and entry[1]

    def domain_of(self, carrier_id: int) -> str | None:
        entry = self.carriers.get(carrier_id)
        return entry[0] if entry else None


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """``sha256:<hex>`` over the DER certificate (how telemetry and evidence name a vehicle's certificate)."""
    return "sha256:" + hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def spiffe_uris(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError:  # a SAN extension that does not parse
        return []
    return list(extension.value.get_values_for_type(x509.UniformResourceIdentifier))


def _spiffe_id(certificate: x509.Certificate) -> SpiffeId:
    uris = spiffe_uris(certificate)
    if len(uris) != 1:
        raise SvidRefused("uri-san", f"An X.509-SVID carries exactly one URI SAN; this certificate has {len(uris)}.")
    try:
        return SpiffeId(uris[0])
    except PySpiffeError as exc:
        raise SvidRefused("not-spiffe-id", f"The URI SAN is not a SPIFFE ID: {exc}.") from None


def _leaf_check(certificate: x509.Certificate) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise SvidRefused("not-a-leaf", "The certificate is a CA certificate (basic constraints cA is true).")
    except x509.ExtensionNotFound:
        pass  # no basic constraints: not a CA
    try:
        usage_extension = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        raise SvidRefused("key-usage", "The SVID has no key usage extension; one is required.") from None
    usage = usage_extension.value
    if not usage_extension.critical:
        raise SvidRefused("key-usage", "The key usage extension of an SVID must be critical.")
    if usage.key_cert_sign or usage.crl_sign:
        raise SvidRefused("key-usage", "A leaf SVID must not set keyCertSign or cRLSign.")
    if not usage.digital_signature:
        raise SvidRefused("key-usage", "A leaf SVID must set digitalSignature.")
    try:
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in extended:
        raise SvidRefused("extended-key-usage", "The extended key usage does not list clientAuth.")


def _validity_check(certificate: x509.Certificate, now: dt.datetime) -> None:
    if now > certificate.not_valid_after_utc:
        raise SvidRefused("expired", f"The SVID expired at {certificate.not_valid_after_utc.isoformat()}.")
    if now < certificate.not_valid_before_utc:
        raise SvidRefused("not-yet-valid", f"The SVID is valid from {certificate.not_valid_before_utc.isoformat()}.")


def _chains_to(
    certificate: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    now: dt.datetime,
) -> bool:
    if not anchors:
        return False
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(anchors)))
        .time(now)
        # The CA certificates keep the Web PKI profile's rules; the leaf's own rules are the
        # SPIFFE ones checked above (the Web PKI's end-entity rules are about DNS names).
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(certificate, list(intermediates))
    except verification.VerificationError:
        return False
    return True


def svid_verify(
    certificate: x509.Certificate,
    *,
    carrier_id: int,
    registry: TrustRegistry,
    now: dt.datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> VehicleIdentity:
    """The vehicle ``certificate`` identifies, if it is a valid SVID of carrier ``carrier_id``; else ``SvidRefused``."""
    spiffe_id = _spiffe_id(certificate)
    _leaf_check(certificate)
    _validity_check(certificate, now)
    domain = spiffe_id.trust_domain.name
    expected = registry.domain_of(carrier_id)
    if domain != expected:
        if domain in registry.domains:
            raise SvidRefused("other-carrier", f"The trust domain {domain!r} belongs to another carrier.")
        raise SvidRefused(
            "wrong-trust-domain",
            f"The trust domain {domain!r} is not this carrier's"
            + (f" ({expected!r})." if expected else " (it has registered none)."),
        )
    path = spiffe_id.path
    vehicle_id = path[len(VEHICLE_PATH_PREFIX) :] if path.startswith(VEHICLE_PATH_PREFIX) else ""
    if not vehicle_id or "/" in vehicle_id:
        raise SvidRefused("not-a-vehicle", f"The SPIFFE ID path {path!r} is not /vehicle/<vehicle id>.")
    if not _chains_to(certificate, registry.active.get(carrier_id, []), intermediates, now):
        if _chains_to(certificate, registry.retired.get(carrier_id, []), intermediates, now):
            raise SvidRefused("retired-ca", "The SVID was issued by a CA certificate this carrier has retired.")
        raise SvidRefused("unknown-ca", "The SVID does not chain to any CA certificate of this carrier's trust bundle.")
    return VehicleIdentity(
        spiffe_id=str(spiffe_id),
        trust_domain=domain,
        vehicle_id=vehicle_id,
        carrier_id=carrier_id,
        fingerprint=fingerprint_sha256(certificate),
        not_after=certificate.not_valid_after_utc,
    )


def foreign_trust_domain(certificate: x509.Certificate, *, carrier_id: int, registry: TrustRegistry) -> bool:
    """True when ``certificate`` names a SPIFFE ID in a trust domain registered to another carrier."""
    uris = spiffe_uris(certificate)
    for uri in uris:
        try:
            domain = SpiffeId(uri).trust_domain.name
        except PySpiffeError:
            continue
        owner = registry.domains.get(domain)
        if owner is not None and owner != carrier_id:
            return True
    return False


def events_of_vehicle(identity: VehicleIdentity, events: Sequence[object]) -> None:
    """Refuse the whole message when any event names another vehicle than the SVID (``vehicle-mismatch``).

    An event that is not an object, or has no string ``vehicle_id``, is left to the
    event validator, which refuses it on its own.
    """
    for index, event in enumerate(events):
        if isinstance(event, dict):
            named = event.get("vehicle_id")
            if isinstance(named, str) and named != identity.vehicle_id:
                raise SvidRefused(
                    "vehicle-mismatch",
                    f"Event {index} names vehicle {named[:100]!r}; the SVID is {identity.spiffe_id}.",
                )


def signature_verify(certificate: x509.Certificate, *, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` over ``data`` was made with the key of ``certificate`` (proof of possession).

    ECDSA (DER signature) and RSA PKCS#1 v1.5 with SHA-256, or Ed25519: what SVID keys are.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    key = certificate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
