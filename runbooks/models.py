"""Incidents (first cut: status machine, links, timestamps, review)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from missions.models import Carrier, Mission, Vehicle
from runbooks.choices import IncidentKind, IncidentSeverity, IncidentStatus


class Incident(models.Model):
    """Something on-call must handle; at most one open incident per mission and kind.

    Its timeline is the event records that carry its id.
    """

    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=30, choices=IncidentKind.choices)
    severity = models.CharField(max_length=10, choices=IncidentSeverity.choices, default=IncidentSeverity.ERROR)
    status = models.CharField(max_length=15, choices=IncidentStatus.choices, default=IncidentStatus.TRIGGERED)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    mission = models.ForeignKey(Mission, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    vehicle = models.ForeignKey(Vehicle, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    # Same key while open -> repeats join this incident instead of opening another.
    dedupe_key = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    review = models.TextField(blank=True)
    triggered_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-triggered_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=models.Q(status__in=["triggered", "acknowledged", "mitigated"]),
                name="incident_one_open_per_dedupe_key",
            )
        ]

    def __str__(self) -> str:
        return f"INC-{self.pk}: {self.title}"
