"""The event bus relay's position in each of its sources, and what it could not publish."""

from __future__ import annotations

from django.db import models


class BusCursor(models.Model):
    """How far the relay has published one source (``events``: the event record; ``telemetry``: samples).

    Every row with an id up to ``position`` is on the bus (acknowledged by
    JetStream), excluded from it, or was a gap (an id never committed) for
    longer than the grace. Moved only forward, and only after the acks.
    """

    name = models.CharField(max_length=30, primary_key=True)
    position = models.BigIntegerField(default=0)
    published = models.BigIntegerField(default=0)  # messages acknowledged, for the operations page
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class BusRefusal(models.Model):
    """A message the bus refused (too large for the stream, rejected by it): recorded, never silently dropped."""

    stream = models.CharField(max_length=60)
    message_id = models.CharField(max_length=120)
    subject = models.CharField(max_length=255)
    size_bytes = models.PositiveIntegerField()
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.stream} {self.message_id}: {self.reason}"
