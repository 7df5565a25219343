"""Vehicle workload identity: each carrier's SPIFFE trust domain and the CA certificates of its trust bundle.

A vehicle proves who it is with an X.509-SVID whose URI SAN is
``spiffe://<carrier trust domain>/vehicle/<vehicle id>``, issued by one of
its carrier's bundle certificates (docs/identity.md). Writes go through
``missions.identity.services``.
"""

from __future__ import annotations

from django.db import models

from missions.models.core import Carrier


class CarrierTrustDomain(models.Model):
    """The SPIFFE trust domain a carrier's vehicles are named in; one per carrier, never shared.

    While ``svid_required`` is set (the default once a trust domain is registered), every
    telemetry path refuses this carrier's telemetry without a valid vehicle SVID.
    """

    carrier = models.OneToOneField(Carrier, on_delete=models.CASCADE, related_name="trust_domain")
    # The trust domain name as the SPIFFE ID standard spells it: lower case, no scheme, no port.
    name = models.CharField(max_length=255, unique=True)
    svid_required = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.carrier_id})"


class TrustBundleCertificate(models.Model):
    """One CA certificate of a carrier's trust bundle.

    Several are active at once while a carrier rotates its CA (the new one is
    added before the old one is retired: overlap). A retired certificate is kept
    for the record; SVIDs it issued are refused from the moment it is retired.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="trust_bundle")
    # SHA-256 over the DER certificate, lower-case hex.
    fingerprint_sha256 = models.CharField(max_length=64)
    subject = models.CharField(max_length=500)
    pem = models.TextField()
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    added_at = models.DateTimeField()
    added_by = models.CharField(max_length=150)
    retired_at = models.DateTimeField(null=True, blank=True)
    retired_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["carrier_id", "-added_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["carrier", "fingerprint_sha256"], name="trust_bundle_certificate_once")
        ]

    def __str__(self) -> str:
        return f"{self.subject} ({self.fingerprint_sha256[:16]}...)"

    @property
    def active(self) -> bool:
        return self.retired_at is None
