"""Carrier onboarding: invitations to the carrier portal, its members, and the carrier's profile.

A carrier manager invites a carrier by its legal name and an address of its
integration staff; the invitation's link (a secret shown once and mailed,
stored only as its SHA-256) lets one person create their portal account, which
belongs to that carrier and to nothing else. Writes go through
``missions.onboarding.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from missions.models.core import Carrier


class CarrierInvitation(models.Model):
    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    # SHA-256 of the secret in the link; the secret itself is never stored.
    token_sha256 = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.carrier.slug}"


class CarrierMember(models.Model):
    """A portal user: one of a carrier's integration staff. Sees that carrier's portal and nothing else."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="carrier_member")
    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="members")
    invitation = models.OneToOneField(CarrierInvitation, on_delete=models.PROTECT, related_name="member")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} at {self.carrier.slug}"


class CarrierAuthMethod(models.TextChoices):
    OAUTH = "oauth_client_credentials", "OAuth 2.0 client credentials"
    MTLS = "mtls", "mTLS client certificate"
    SVID = "spiffe_svid", "SPIFFE X.509-SVID (trust bundle)"


class CarrierProfile(models.Model):
    """What the carrier tells us about itself in the portal (its operating limits stay on ``Carrier``)."""

    carrier = models.OneToOneField(Carrier, on_delete=models.CASCADE, related_name="profile")
    legal_name = models.CharField(max_length=200)
    # Standard Carrier Alpha Code (NMFTA): 2 to 4 capital letters.
    scac = models.CharField(max_length=4, blank=True)
    # FMCSA: USDOT number (up to 8 digits) and MC docket number (up to 8 digits).
    usdot_number = models.CharField(max_length=8, blank=True)
    mc_number = models.CharField(max_length=8, blank=True)
    contact_name = models.CharField(max_length=120, blank=True)
    contact_email = models.EmailField(blank=True)
    contact_phone = models.CharField(max_length=32, blank=True)
    # Operating design domain beyond Carrier's regions, autonomy level, hazmat and weight.
    odd_hours = models.CharField(max_length=11, default="00:00-24:00")
    odd_max_wind_kph = models.PositiveSmallIntegerField(null=True, blank=True)
    odd_min_visibility_m = models.PositiveIntegerField(null=True, blank=True)
    odd_snow_allowed = models.BooleanField(default=False)
    sandbox_api_url = models.URLField(max_length=500, blank=True)
    # The sandbox's OAuth client credentials for our certification runs (test credentials, never production).
    sandbox_client_id = models.CharField(max_length=200, blank=True)
    sandbox_client_secret = models.CharField(max_length=200, blank=True)
    production_api_url = models.URLField(max_length=500, blank=True)
    # Production OAuth client credentials for our calls; copied to the carrier's API settings at go-live.
    production_client_id = models.CharField(max_length=200, blank=True)
    production_client_secret = models.CharField(max_length=200, blank=True)
    auth_method = models.CharField(max_length=30, choices=CarrierAuthMethod.choices, default=CarrierAuthMethod.OAUTH)
    # The CA (mTLS) or SPIFFE trust bundle (SVID) the sandbox's server certificate chains to, as PEM;
    # empty: the public CAs. With SVID, the SPIFFE ID the sandbox's server certificate must carry.
    sandbox_ca_pem = models.TextField(blank=True)
    sandbox_spiffe_id = models.CharField(max_length=300, blank=True)
    # The carrier's side of certification: the sandbox's client for our API (scope certification:write),
    # the secret its test webhooks are signed with, and the telemetry rate it declares (samples a second).
    sandbox_partner_client = models.OneToOneField(
        "missions.PartnerClient", on_delete=models.SET_NULL, null=True, blank=True, related_name="sandbox_of"
    )
    sandbox_webhook_secret = models.CharField(max_length=100, blank=True)
    telemetry_rate_hz = models.FloatField(default=1.0)
    # The pause reason the compliance watch set, while that pause lasts: it resumes only its own pause.
    compliance_pause_reason = models.CharField(max_length=300, blank=True)
    # The drift watch (missions.onboarding.drift): what drifted, the date re-certification is due by,
    # the day the sandbox was last smoke-checked, and the pause it made when the date passed.
    drift_reason = models.CharField(max_length=300, blank=True)
    recertify_by = models.DateField(null=True, blank=True)
    smoke_checked_on = models.DateField(null=True, blank=True)
    drift_pause_reason = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"profile of {self.carrier.slug}"


class ComplianceKind(models.TextChoices):
    INSURANCE = "insurance", "Certificate of insurance"
    PERMIT = "permit", "Operating permit"


class ComplianceDocument(models.Model):
    """A compliance document a carrier uploaded in the portal: the PDF itself, its digest and what it states.

    The PDF is kept in the database (a few hundred kilobytes, written in the same transaction as
    its facts, so a document is never stored half). Valid from ``effective_on`` through
    ``expires_on``; the daily watch warns before and pauses tendering after
    (``missions.onboarding.compliance``).
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="compliance_documents")
    kind = models.CharField(max_length=20, choices=ComplianceKind.choices)
    # A permit's state (two-letter code); empty for the certificate of insurance.
    state = models.CharField(max_length=2, blank=True)
    filename = models.CharField(max_length=200)
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    insurer = models.CharField(max_length=120, blank=True)
    policy_number = models.CharField(max_length=60, blank=True)
    auto_liability_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    cargo_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    effective_on = models.DateField()
    expires_on = models.DateField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    # Days-before-expiry warnings already sent (e.g. [30, 7]), so each goes out once.
    warnings_sent = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-uploaded_at"]
        indexes = [models.Index(fields=["carrier", "kind", "state", "expires_on"], name="compliance_current")]

    def __str__(self) -> str:
        what = f"{self.get_kind_display()} {self.state}".strip()
        return f"{what} of {self.carrier.slug} until {self.expires_on}"


class CertificationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"


class CertificationRun(models.Model):
    """One run of the conformance checks against a carrier's sandbox (``missions.onboarding.certification``).

    ``checks`` holds every check in order, each with its status, what was sent and answered
    (secrets redacted), and a hint when it failed; it is saved after each check, so the page
    shows progress and a run taken over after a worker restart resumes where it stopped.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="certification_runs")
    run_key = models.UUIDField(unique=True)  # seeds the run's Idempotency-Keys: a resumed run resends the same
    contract_version = models.CharField(max_length=20)
    sandbox_url = models.URLField(max_length=500)
    status = models.CharField(max_length=10, choices=CertificationStatus.choices, default=CertificationStatus.QUEUED)
    # "full" (every check, can certify) or "smoke" (the drift watch's nightly subset; never certifies).
    kind = models.CharField(max_length=10, default="full")
    checks = models.JSONField(default=list)
    # Empty: started by the drift watch.
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"certification {self.pk} of {self.carrier.slug}: {self.status}"


class CertificationDelivery(models.Model):
    """What a carrier's sandbox sent to a run's receivers (``missions.onboarding.receivers``): one request each.

    Kept as received, headers redacted and the body cut at 16 KiB, with whether it verified and why not,
    so the run's carrier-side checks judge it and the report shows it.
    """

    run = models.ForeignKey(CertificationRun, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10)  # "webhook" or "telemetry"
    received_at = models.DateTimeField()
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    accepted = models.BooleanField(default=False)
    reason = models.CharField(max_length=300, blank=True)
    # Telemetry: the events' sample times (ISO 8601) and vehicle ids, in order, for the rate and clock checks.
    samples = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["received_at", "pk"]

    def __str__(self) -> str:
        return f"{self.channel} delivery to certification {self.run_id}"
