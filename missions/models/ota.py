"""OTA manifests in the TUF / Uptane model: the carriers' TUF repositories the console reads, and what it
concluded about the software each vehicle reports.

The console consumes a carrier's TUF metadata, it does not distribute software.
Writes go through ``missions.ota.services``; docs/decisions/0025-ota-verification.md.
"""

from __future__ import annotations

from django.db import models

from missions.models.core import Carrier, Vehicle


class OtaRepositoryRole(models.TextChoices):
    # Uptane: the image repository signs every image the carrier released; the director
    # repository says which image each vehicle should run.
    IMAGE = "image", "Image repository"
    DIRECTOR = "director", "Director repository"


class SoftwareStatus(models.TextChoices):
    VERIFIED = "verified", "Verified"
    REFUSED = "refused", "Refused"


class CarrierOtaRepository(models.Model):
    """A carrier's TUF repository (image or director): where its metadata lives and the root an admin trusted.

    ``trusted_root`` is the root metadata bootstrapped by an administrator; the
    metadata the client verified from it is cached under ``OTA_CACHE_DIR`` (the
    rollback protection lives there). The refresh fields hold the last refresh's
    outcome; ``targets`` the targets of the last metadata that verified, by path.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="ota_repositories")
    role = models.CharField(max_length=10, choices=OtaRepositoryRole.choices, default=OtaRepositoryRole.IMAGE)
    metadata_url = models.CharField(max_length=500)
    trusted_root = models.TextField()
    root_sha256 = models.CharField(max_length=64)
    configured_at = models.DateTimeField()
    refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_ok = models.BooleanField(default=False)
    # Why the last refresh failed: a code of missions.ota.tuf_client.FAILURES and the client's message.
    failure_kind = models.CharField(max_length=40, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    versions = models.JSONField(default=dict, blank=True)
    # The earliest expiry of the verified top-level metadata: past it, nothing verifies.
    expires_at = models.DateTimeField(null=True, blank=True)
    # {path: {"length": int, "sha256": str, "release_counter": int | None, "vehicle_ids": [str] | None}}
    targets = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["carrier_id", "role"]
        constraints = [models.UniqueConstraint(fields=["carrier", "role"], name="ota_repository_unique_role")]

    def __str__(self) -> str:
        return f"{self.carrier_id}:{self.role}"


class VehicleSoftware(models.Model):
    """The software version a vehicle last reported in telemetry and whether the carrier's signed metadata backs it.

    ``verified_version`` and ``release_counter`` keep the last version that
    verified: a later report of a target with a lower release counter is a
    rollback (Uptane's release counter rule).
    """

    vehicle = models.OneToOneField(Vehicle, on_delete=models.CASCADE, related_name="software")
    version = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=SoftwareStatus.choices)
    reason_code = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    verified_version = models.CharField(max_length=200, blank=True)
    release_counter = models.BigIntegerField(null=True, blank=True)
    reported_at = models.DateTimeField()
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["vehicle_id"]

    def __str__(self) -> str:
        return f"{self.vehicle_id}:{self.version}={self.status}"
