"""Outbound calls to carrier APIs and the waterfall order of automatic tendering."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from missions.models.core import Carrier, Shipment, Tender

# ``OutboundCall.error`` of an answer that breaks docs/carrier-api.yaml starts with this. The SLA
# engine counts such calls against the carrier whatever their status code (docs/decisions/0018).
CONTRACT_VIOLATION = "contract violation"


class OutboundCall(models.Model):
    """One HTTP call we made to a carrier's API (each retry attempt is its own row).

    The SLA engine computes the carrier-API latency and error-rate SLIs from
    these rows, so a call that failed validation is stored with ``ok=False``
    and an ``error`` starting with ``CONTRACT_VIOLATION``. A call the breaker
    or the bulkhead refused was never made and has no row.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="outbound_calls")
    tender = models.ForeignKey(Tender, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_calls")
    # token / tender_submit / tender_resend / tender_status / tender_cancel / vehicle_ping / health
    operation = models.CharField(max_length=30)
    method = models.CharField(max_length=10)
    url = models.CharField(max_length=500)
    attempt = models.PositiveSmallIntegerField(default=1)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField()
    ok = models.BooleanField()
    error = models.CharField(max_length=500, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    started_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["carrier", "started_at"]), models.Index(fields=["carrier", "operation", "ok"])]

    def __str__(self) -> str:
        return f"{self.operation} -> {self.carrier_id}: {self.status_code or self.error[:40]}"


class TenderWaterfall(models.Model):
    """The ranked carrier order of an automatic waterfall over one shipment.

    The order is fixed when the waterfall starts so that a rejection or an
    expiry moves to the next carrier the dispatcher saw, not to a re-ranking.
    At most one waterfall per shipment is active.
    """

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="waterfalls")
    carrier_ids = models.JSONField(default=list)
    # Index into carrier_ids of the next carrier to try.
    next_index = models.PositiveSmallIntegerField(default=0)
    offered_price_usd = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    is_active = models.BooleanField(default=True)
    stopped_reason = models.CharField(max_length=300, blank=True)
    started_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["shipment"], condition=Q(is_active=True), name="one_active_waterfall")
        ]

    def __str__(self) -> str:
        return f"Waterfall {self.pk} for shipment {self.shipment_id}"
