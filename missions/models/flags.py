"""Per-carrier feature flags: which new autonomy capabilities the console has switched on for a carrier.

The catalogue of flags (their labels and effects) is ``missions.flags.CARRIER_FLAGS``;
a row exists once a flag was set for a carrier, and a missing row means off.
Written only by ``missions.services.carrier_flag_set``, read through the
OpenFeature provider in ``missions.flags``.
"""

from __future__ import annotations

from django.db import models

from missions.models.core import Carrier


class CarrierFlag(models.Model):
    """One feature flag of one carrier: on or off, with who set it last and why."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="flags")
    # A key of missions.flags.CARRIER_FLAGS; a key no longer in the catalogue is ignored.
    key = models.CharField(max_length=40)
    enabled = models.BooleanField(default=False)
    reason = models.CharField(max_length=300, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["carrier_id", "key"]
        constraints = [models.UniqueConstraint(fields=["carrier", "key"], name="carrier_flag_unique_key")]

    def __str__(self) -> str:
        return f"{self.carrier_id}:{self.key}={'on' if self.enabled else 'off'}"
