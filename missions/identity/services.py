"""Writes for vehicle identity: a carrier's trust domain, adding and retiring its bundle's CA certificates.

Each change leaves an audit event (``carrier.trust_domain_set``,
``carrier.trust_bundle_added``, ``carrier.trust_bundle_retired``) in its
transaction, and drops this process's trust registry after commit so the
change applies here at once (elsewhere within ``REGISTRY_TTL_SECONDS``).

Rotation with overlap: add the new CA, let vehicles renew their SVIDs, then
retire the old one. The last active CA of a carrier that requires SVIDs cannot
be retired: that would refuse all of its fleet's telemetry at once.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.db import IntegrityError, transaction
from django.utils import timezone
from spiffe import TrustDomain
from spiffe.errors import PySpiffeError

from missions.events import Actor, event_record
from missions.identity.selectors import trust_registry_forget
from missions.models import Carrier
from missions.models.identity import CarrierTrustDomain, TrustBundleCertificate
from tms_console.domain import Conflict, DomainError

PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
BUNDLE_MAX_CERTIFICATES = 20


def trust_domain_normalize(value: str) -> str:
    """The trust domain name as stored; ``DomainError`` with a message for the form otherwise."""
    value = value.strip()
    if value.startswith("spiffe://"):
        value = value.removeprefix("spiffe://").rstrip("/")
    try:
        name = TrustDomain(value).name
    except PySpiffeError as exc:
        raise DomainError(
            f"Not a SPIFFE trust domain name, such as 'carrier-a.example': {exc}.", field="name"
        ) from None
    if not name or "/" in name:
        raise DomainError("Not a SPIFFE trust domain name, such as 'carrier-a.example'.", field="name")
    return name


@transaction.atomic
def trust_domain_set(*, carrier_id: int, name: str, svid_required: bool, actor: Actor) -> CarrierTrustDomain:
    """Register (or change) the carrier's trust domain and whether its telemetry needs SVIDs."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    normalized = trust_domain_normalize(name)
    taken = CarrierTrustDomain.objects.filter(name=normalized).exclude(carrier_id=carrier_id).exists()
    if taken:
        raise Conflict(f"The trust domain {normalized!r} is registered to another carrier.", field="name")
    current = CarrierTrustDomain.objects.filter(carrier_id=carrier_id).first()
    before = {"name": current.name, "svid_required": current.svid_required} if current else None
    if current is None:
        current = CarrierTrustDomain.objects.create(carrier=carrier, name=normalized, svid_required=svid_required)
    elif (current.name, current.svid_required) == (normalized, svid_required):
        return current
    else:
        current.name, current.svid_required = normalized, svid_required
        current.save(update_fields=["name", "svid_required", "updated_at"])
    event_record(
        actor=actor,
        action="carrier.trust_domain_set",
        subject_type="carrier",
        subject_id=carrier.pk,
        before=before,
        after={"name": current.name, "svid_required": current.svid_required},
        carrier=carrier,
    )
    transaction.on_commit(trust_registry_forget)
    return current


def bundle_parse(pem_text: str) -> list[x509.Certificate]:
    """The CA certificates in pasted or uploaded PEM text; ``DomainError`` naming what is wrong."""
    blocks = PEM_BLOCK.findall(pem_text or "")
    if not blocks:
        raise DomainError(
            "No PEM certificate found (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----).", field="pem"
        )
    if len(blocks) > BUNDLE_MAX_CERTIFICATES:
        raise DomainError(f"At most {BUNDLE_MAX_CERTIFICATES} certificates at once.", field="pem")
    moment = timezone.now()
    certificates = []
    for number, block in enumerate(blocks, start=1):
        try:
            certificate = x509.load_pem_x509_certificate(block.encode("ascii"))
        except ValueError:
            raise DomainError(f"Certificate {number} could not be read as X.509.", field="pem") from None
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        except ValueError:
            raise DomainError(f"Certificate {number} has extensions that cannot be read.", field="pem") from None
        if not is_ca:
            raise DomainError(
                f"Certificate {number} ({certificate.subject.rfc4514_string()}) is not a CA certificate "
                "(basic constraints cA must be true): a bundle holds the CAs that sign SVIDs.",
                field="pem",
            )
        if certificate.not_valid_after_utc <= moment:
            raise DomainError(
                f"Certificate {number} expired at {certificate.not_valid_after_utc:%Y-%m-%d %H:%M}Z.", field="pem"
            )
        certificates.append(certificate)
    return certificates


@transaction.atomic
def trust_bundle_add(*, carrier_id: int, pem_text: str, actor: Actor) -> list[TrustBundleCertificate]:
    """Add the CA certificates in ``pem_text`` to the carrier's bundle (already present ones are skipped)."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if not CarrierTrustDomain.objects.filter(carrier_id=carrier_id).exists():
        raise DomainError("Register the carrier's trust domain before its trust bundle.", field="pem")
    now = timezone.now()
    added = []
    for certificate in bundle_parse(pem_text):
        fingerprint = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
        if TrustBundleCertificate.objects.filter(carrier_id=carrier_id, fingerprint_sha256=fingerprint).exists():
            continue
        try:
            with transaction.atomic():
                row = TrustBundleCertificate.objects.create(
                    carrier=carrier,
                    fingerprint_sha256=fingerprint,
                    subject=certificate.subject.rfc4514_string()[:500],
                    pem=certificate.public_bytes(Encoding.PEM).decode("ascii"),
                    not_before=certificate.not_valid_before_utc,
                    not_after=certificate.not_valid_after_utc,
                    added_at=now,
                    added_by=actor.label[:150],
                )
        except IntegrityError:
            continue  # added by a concurrent request
        event_record(
            actor=actor,
            action="carrier.trust_bundle_added",
            subject_type="carrier",
            subject_id=carrier.pk,
            after={"fingerprint_sha256": fingerprint, "subject": row.subject, "not_after": row.not_after},
            data={"bundle_certificate_id": row.pk},
            carrier=carrier,
        )
        added.append(row)
    if added:
        transaction.on_commit(trust_registry_forget)
    return added


@transaction.atomic
def trust_bundle_retire(*, certificate_id: int, actor: Actor) -> TrustBundleCertificate:
    """Retire one CA certificate: SVIDs it issued are refused from now on (``retired-ca``)."""
    row = TrustBundleCertificate.objects.select_for_update().select_related("carrier").get(pk=certificate_id)
    if row.retired_at is not None:
        return row
    Carrier.objects.select_for_update().filter(pk=row.carrier_id).first()  # one bundle change at a time
    others = TrustBundleCertificate.objects.filter(carrier_id=row.carrier_id, retired_at__isnull=True).exclude(
        pk=row.pk
    )
    domain = CarrierTrustDomain.objects.filter(carrier_id=row.carrier_id).first()
    if domain is not None and domain.svid_required and not others.exists():
        raise DomainError(
            "This is the carrier's last active CA and its telemetry requires SVIDs: add the new CA first "
            "(rotation with overlap), or stop requiring SVIDs.",
        )
    row.retired_at = timezone.now()
    row.retired_by = actor.label[:150]
    row.save(update_fields=["retired_at", "retired_by"])
    event_record(
        actor=actor,
        action="carrier.trust_bundle_retired",
        subject_type="carrier",
        subject_id=row.carrier_id,
        before={"fingerprint_sha256": row.fingerprint_sha256, "active": True},
        after={"fingerprint_sha256": row.fingerprint_sha256, "active": False},
        data={"bundle_certificate_id": row.pk, "subject": row.subject},
        carrier=row.carrier,
    )
    transaction.on_commit(trust_registry_forget)
    return row
