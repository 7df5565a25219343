"""Signed route plans: the carriers' plan-signing public keys and the plans verified with them.

Writes go through ``missions.routeplans.services``; the en-route gate in
``missions.services.mission_transition`` reads ``RoutePlan``.
docs/decisions/0024-signed-route-plans.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from missions.models.core import Carrier, Mission


class CarrierSigningKey(models.Model):
    """A public key a carrier signs its route plans with (ECDSA P-256, PEM SubjectPublicKeyInfo).

    ``key_id`` is the hex SHA-256 of the key's DER SubjectPublicKeyInfo: the
    same key gets the same id whoever registers it. A retired key verifies
    nothing from its ``retired_at`` on; plans it verified before stay verified.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="signing_keys")
    name = models.CharField(max_length=120)
    key_id = models.CharField(max_length=64)
    public_key_pem = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["carrier_id", "-created_at", "-id"]
        constraints = [
            # One key is one carrier's: a key registered twice could not say whose plan it signed.
            models.UniqueConstraint(fields=["key_id"], name="signing_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.carrier.slug}, {self.key_id[:12]})"

    @property
    def active(self) -> bool:
        return self.retired_at is None


class RoutePlan(models.Model):
    """A route plan whose signature verified against its carrier's key: only verified plans are stored here.

    ``artifact`` is the exact signed bytes; ``sha256`` their digest. The plan's
    fields are copied out of the artifact after verification. Versions only grow
    per mission (a replayed older or equal version is refused as a rollback).
    """

    mission = models.ForeignKey(Mission, on_delete=models.CASCADE, related_name="route_plans")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="route_plans")
    version = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    artifact = models.BinaryField()
    signature = models.TextField(help_text="base64 DER ECDSA signature, as cosign sign-blob writes it")
    signing_key = models.ForeignKey(CarrierSigningKey, on_delete=models.PROTECT, related_name="plans")
    waypoints = models.JSONField(help_text="[[lat, lon], ...] in WGS 84 degrees")
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    verified_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mission_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["mission", "version"], name="route_plan_version_unique"),
            models.CheckConstraint(
                condition=models.Q(valid_until__gt=models.F("valid_from")), name="route_plan_window"
            ),
        ]

    def __str__(self) -> str:
        return f"mission {self.mission_id} plan v{self.version} ({self.sha256[:12]})"
