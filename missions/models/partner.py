"""Partner API state: OAuth clients bound to carriers, idempotency records, webhook secrets and receipts.

Writes go through ``missions.partner.services`` (clients, secrets) and
``missions.partner.api.idempotency`` (idempotency records, which are request
bookkeeping rather than domain state).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from oauth2_provider.models import AccessToken, Application

from missions.models.core import Carrier

PARTNER_SCOPES: dict[str, str] = {
    "tender:read": "Read tenders addressed to the carrier",
    "tender:write": "Answer tenders (accept, reject, counter)",
    "missions:read": "Read the carrier's missions",
    "missions:write": "Post mission status and autonomy-mode changes",
    "telemetry:write": "Send telemetry events",
    "telemetry:read": "Read telemetry of the carrier's missions",
    "exceptions:write": "Report mission exceptions",
    "edi:write": "Exchange EDI X12 interchanges (990, 214, 997)",
    "certification:read": "Read the carrier's certification runs, their reports and signed certificates",
    "certification:write": "Send a certification run's test webhooks and telemetry (sandbox clients only)",
}
# Given to a carrier sandbox's client by the portal, and to nothing else: it reaches only the receivers of
# that carrier's certification runs.
SANDBOX_SCOPES = ("certification:read", "certification:write")
PRODUCTION_SCOPES = " ".join(s for s in PARTNER_SCOPES if s != "certification:write")


class CertificateKind(models.TextChoices):
    """The certificate field a client's registered value is found in (RFC 8705 §2.1.2 metadata names)."""

    SUBJECT_DN = "tls_client_auth_subject_dn", "Subject DN (RFC 4514)"
    SAN_DNS = "tls_client_auth_san_dns", "SAN: DNS name"
    SAN_URI = "tls_client_auth_san_uri", "SAN: URI"
    SAN_IP = "tls_client_auth_san_ip", "SAN: IP address"
    SAN_EMAIL = "tls_client_auth_san_email", "SAN: e-mail address"
    X5T_S256 = "x5t#S256", "SHA-256 thumbprint of the certificate"


class PartnerClient(models.Model):
    """An OAuth2 client (client-credentials only) that acts for exactly one carrier.

    The application's secret is hashed by django-oauth-toolkit; the plain
    secret exists only in the response that created or rotated it.

    A client may register the certificate it authenticates with (RFC 8705
    §2.1, ``tls_client_auth``): one expected value, in the certificate field
    ``certificate_kind``. Tokens are then issued to it only over a certificate
    that carries that value; a carrier that requires mTLS gets tokens only for
    clients that registered one.
    """

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="partner_client")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="partner_clients")
    # Space-separated subset of PARTNER_SCOPES this client may request.
    allowed_scopes = models.CharField(max_length=300, default=PRODUCTION_SCOPES)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    certificate_kind = models.CharField(max_length=40, choices=CertificateKind.choices, blank=True)
    # Normalized by missions.partner.certificates (RFC 4514 DN, lower-case DNS name, base64url thumbprint...).
    certificate_value = models.CharField(max_length=1024, blank=True)

    class Meta:
        ordering = ["carrier_id", "id"]
        constraints = [
            # RFC 8705 §2.1.2: exactly one expected value, or none.
            models.CheckConstraint(
                condition=(models.Q(certificate_kind="") & models.Q(certificate_value=""))
                | (~models.Q(certificate_kind="") & ~models.Q(certificate_value="")),
                name="partner_client_certificate_kind_and_value",
            )
        ]

    def __str__(self) -> str:
        return f"{self.application.name} ({self.carrier.slug})"

    @property
    def scopes(self) -> set[str]:
        return set(self.allowed_scopes.split())

    @property
    def has_certificate(self) -> bool:
        return bool(self.certificate_kind and self.certificate_value)


class TokenCertificateBinding(models.Model):
    """RFC 8705 §3 binding of an access token to the client certificate it was issued over."""

    access_token = models.OneToOneField(AccessToken, on_delete=models.CASCADE, related_name="certificate_binding")
    # base64url(SHA-256(DER certificate)) without padding: the x5t#S256 confirmation value.
    x5t_s256 = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"token {self.access_token_id} bound to {self.x5t_s256}"


class IdempotencyStatus(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    COMPLETED = "completed", "Completed"


class IdempotencyRecord(models.Model):
    """The first outcome of a mutating API call under one Idempotency-Key, kept for replay.

    Keys are scoped per OAuth client; the fingerprint (SHA-256 of method,
    path and raw body) tells a retry from a reuse of the key for another request.
    """

    client = models.ForeignKey(PartnerClient, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=IdempotencyStatus.choices, default=IdempotencyStatus.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The first answer's body exactly as it went out (a replay sends these bytes, not a re-rendering).
    response_content = models.BinaryField(null=True, blank=True)
    # The first answer's Content-Type and Location.
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique_per_client")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key} ({self.status})"


class WebhookSecret(models.Model):
    """A carrier's Standard Webhooks signing secret (``whsec_`` + base64).

    Two secrets overlap during a rotation: the old one gets a ``valid_until``
    and the new one is valid from now, so deliveries signed with either verify.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="webhook_secrets")
    secret = models.CharField(max_length=100)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-valid_from", "-id"]

    def __str__(self) -> str:
        return f"webhook secret {self.pk} of {self.carrier.slug}"


class WebhookReceipt(models.Model):
    """A processed webhook delivery, so a redelivery of the same ``webhook-id`` has no second effect."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="webhook_receipts")
    webhook_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["carrier", "webhook_id"], name="webhook_receipt_unique_per_carrier")
        ]

    def __str__(self) -> str:
        return f"{self.carrier_id}:{self.webhook_id}"
