"""Deliveries of domain events that a subscriber has not yet handled."""

from __future__ import annotations

from django.db import models

from missions.models.core import AuditEvent


class EventDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending retry"
    DEAD = "dead", "Gave up"


class EventDelivery(models.Model):
    """A subscriber that failed on an event, waiting for its next attempt.

    The event row is the outbox: a delivery holds only the subscriber's name and
    what it captured at publish time, and the retry reads the event again. A row
    exists only while a delivery is owed (it is deleted once the subscriber
    succeeds) or after the last attempt failed (``dead``, listed in the admin).
    """

    event = models.ForeignKey(AuditEvent, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.CharField(max_length=100)
    context = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=EventDeliveryStatus.choices, default=EventDeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "subscriber"], name="event_delivery_unique")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="event_delivery_due")]

    def __str__(self) -> str:
        return f"{self.subscriber} <- event #{self.event_id} ({self.status}, {self.attempts} attempts)"
