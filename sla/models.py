"""Contracts with carriers: SLO targets, runbook thresholds, fees and credits."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from missions.models import Carrier

PCT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


class Contract(models.Model):
    """One version of the agreement with a carrier, in force between its effective dates."""

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="contracts")
    version = models.PositiveIntegerField(default=1)
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True, help_text="Exclusive; empty means open-ended")
    monthly_fee_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    on_time_target_pct = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("95"), validators=PCT)
    mission_success_target_pct = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("98"), validators=PCT
    )
    telemetry_integrity_target_pct = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("99"), validators=PCT
    )
    failover_time_target_seconds = models.PositiveIntegerField(default=900)
    mttr_target_seconds = models.PositiveIntegerField(default=3600)
    api_latency_p99_target_ms = models.PositiveIntegerField(default=1000)
    api_error_rate_target_pct = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("1"), validators=PCT)
    # Used by the runbooks: silence longer than this is lost comms; recovery timeout before failover.
    telemetry_gap_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(5)])
    recovery_timeout_seconds = models.PositiveIntegerField(default=300, validators=[MinValueValidator(10)])
    # [{"below_pct": 95, "credit_pct": 5}, ...]: under this attainment, this share of the fee.
    credit_schedule = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["carrier_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["carrier", "version"], name="contract_version_unique")]

    def __str__(self) -> str:
        return f"{self.carrier.name} v{self.version}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.effective_to and self.effective_from and self.effective_to <= self.effective_from:
            errors["effective_to"] = "The contract must end after it starts."
        if self.carrier_id and self.effective_from:
            overlapping = Contract.objects.filter(carrier_id=self.carrier_id).exclude(pk=self.pk)
            for other in overlapping:
                other_end = other.effective_to
                mine_end = self.effective_to
                starts_before_other_ends = other_end is None or self.effective_from < other_end
                ends_after_other_starts = mine_end is None or mine_end > other.effective_from
                if starts_before_other_ends and ends_after_other_starts:
                    errors["effective_from"] = f"Overlaps {other} ({other.effective_from} to {other_end or 'open'})."
                    break
        schedule = self.credit_schedule
        if not isinstance(schedule, list) or not all(
            isinstance(t, dict) and {"below_pct", "credit_pct"} <= set(t) for t in schedule
        ):
            errors["credit_schedule"] = 'Use a list of {"below_pct": X, "credit_pct": Y} tiers.'
        if errors:
            raise ValidationError(errors)
