"""Carriers, vehicles, shipments, tenders, offers, missions, exceptions, events.

Models hold data and invariants only; every write goes through
``missions.services`` (DESIGN.md §4).
"""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from missions.choices import (
    ActorKind,
    AutonomyMode,
    CarrierKind,
    CarrierStatus,
    CircuitState,
    ExceptionKind,
    ExceptionStatus,
    MissionStatus,
    OfferKind,
    ShipmentStatus,
    TenderStatus,
)

LAT_VALIDATORS = [MinValueValidator(-90.0), MaxValueValidator(90.0)]
LON_VALIDATORS = [MinValueValidator(-180.0), MaxValueValidator(180.0)]
AUTONOMY_LEVEL_VALIDATORS = [MinValueValidator(0), MaxValueValidator(5)]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a 6371 km sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


class Carrier(models.Model):
    """A carrier we can tender to: an autonomous-truck operator or a human-driven fleet.

    Capabilities decide eligibility; the API fields configure our outbound
    calls to the carrier; the breaker fields tune its circuit breaker.
    """

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    kind = models.CharField(max_length=20, choices=CarrierKind.choices)
    status = models.CharField(max_length=10, choices=CarrierStatus.choices, default=CarrierStatus.ACTIVE)
    paused_reason = models.CharField(max_length=300, blank=True)
    # SAE J3016 driving-automation level the carrier's trucks can run at (0-5).
    max_autonomy_level = models.PositiveSmallIntegerField(default=0, validators=AUTONOMY_LEVEL_VALIDATORS)
    hazmat_allowed = models.BooleanField(default=False)
    max_weight_kg = models.PositiveIntegerField(default=36000, validators=[MinValueValidator(1)])
    # Two-letter US state codes the carrier operates in; empty means anywhere.
    operating_regions = models.JSONField(default=list, blank=True)
    # Outbound API (the carrier's side of the contract in docs/carrier-api.yaml).
    api_base_url = models.URLField(blank=True)
    api_token_url = models.URLField(blank=True)
    api_client_id = models.CharField(max_length=200, blank=True)
    api_client_secret = models.CharField(max_length=200, blank=True)
    api_client_cert_path = models.CharField(max_length=500, blank=True)
    api_client_key_path = models.CharField(max_length=500, blank=True)
    api_timeout_seconds = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    # Circuit breaker and bulkhead configuration.
    breaker_failure_threshold = models.PositiveSmallIntegerField(default=5, validators=[MinValueValidator(1)])
    breaker_reset_seconds = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    max_concurrent_calls = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1)])
    tender_expiry_seconds = models.PositiveIntegerField(default=900, validators=[MinValueValidator(10)])
    # Fallback use: pre-approved capacity for failover at a pre-agreed rate.
    is_fallback = models.BooleanField(default=False)
    fallback_rate_usd_per_km = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    # Partner-side security: certificate-bound tokens (RFC 8705) when required.
    require_mtls = models.BooleanField(default=False)
    # Set when a vehicle degraded or went silent: no autonomous tenders until on-call confirms.
    fleet_paused = models.BooleanField(default=False)
    fleet_paused_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.status == CarrierStatus.PAUSED and not self.paused_reason.strip():
            errors["paused_reason"] = "A paused carrier needs a reason."
        if self.is_fallback and self.fallback_rate_usd_per_km is None:
            errors["fallback_rate_usd_per_km"] = "A fallback carrier needs a pre-approved rate."
        regions = self.operating_regions
        if not isinstance(regions, list) or not all(isinstance(r, str) and len(r) == 2 for r in regions):
            errors["operating_regions"] = "Operating regions are a list of two-letter state codes."
        if errors:
            raise ValidationError(errors)

    @property
    def is_autonomous(self) -> bool:
        return self.kind == CarrierKind.AUTONOMOUS


class CarrierCircuit(models.Model):
    """Circuit-breaker state of our calls to one carrier, shared by every worker process."""

    carrier = models.OneToOneField(Carrier, on_delete=models.CASCADE, related_name="circuit")
    state = models.CharField(max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    last_failure_reason = models.CharField(max_length=300, blank=True)
    in_flight = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.carrier.slug}: {self.state}"


class Vehicle(models.Model):
    """A truck of a carrier, known by the carrier's external id and its client certificate."""

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="vehicles")
    external_id = models.CharField(max_length=100)
    # SHA-256 of the vehicle's client certificate (hex, lower case), if it has one.
    certificate_fingerprint = models.CharField(max_length=64, blank=True)
    autonomy_mode = models.CharField(max_length=20, choices=AutonomyMode.choices, default=AutonomyMode.AUTONOMOUS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["carrier_id", "external_id"]
        constraints = [models.UniqueConstraint(fields=["carrier", "external_id"], name="vehicle_unique_per_carrier")]

    def __str__(self) -> str:
        return f"{self.carrier.slug}/{self.external_id}"


class Shipment(models.Model):
    """A load to move from origin to destination within pickup and delivery windows.

    The correlation id is created here and carried by every tender, offer,
    mission, outbound call, telemetry event and log line that follows.
    """

    reference = models.CharField(max_length=32, unique=True)
    origin_address = models.CharField(max_length=300)
    origin_region = models.CharField(max_length=2, help_text="Two-letter US state code")
    origin_lat = models.FloatField(validators=LAT_VALIDATORS)
    origin_lon = models.FloatField(validators=LON_VALIDATORS)
    destination_address = models.CharField(max_length=300)
    destination_region = models.CharField(max_length=2, help_text="Two-letter US state code")
    destination_lat = models.FloatField(validators=LAT_VALIDATORS)
    destination_lon = models.FloatField(validators=LON_VALIDATORS)
    pickup_window_start = models.DateTimeField()
    pickup_window_end = models.DateTimeField()
    delivery_window_start = models.DateTimeField()
    delivery_window_end = models.DateTimeField()
    weight_kg = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(60000)])
    hazmat = models.BooleanField(default=False)
    # The windows can only be met by driving between dusk and dawn: offered only to carriers whose
    # night operations flag is on (missions.flags).
    needs_night_operations = models.BooleanField(default=False, verbose_name="needs night driving")
    # None: any level is acceptable to the shipper.
    max_autonomy_level = models.PositiveSmallIntegerField(null=True, blank=True, validators=AUTONOMY_LEVEL_VALIDATORS)
    preferred_route = models.CharField(max_length=100, blank=True)
    target_rate_usd = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    status = models.CharField(max_length=20, choices=ShipmentStatus.choices, default=ShipmentStatus.OPEN)
    correlation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.reference

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.pickup_window_start and self.pickup_window_end and self.pickup_window_end <= self.pickup_window_start:
            errors["pickup_window_end"] = "The pickup window must end after it starts."
        if (
            self.delivery_window_start
            and self.delivery_window_end
            and self.delivery_window_end <= self.delivery_window_start
        ):
            errors["delivery_window_end"] = "The delivery window must end after it starts."
        if (
            self.pickup_window_start
            and self.delivery_window_end
            and self.delivery_window_end <= self.pickup_window_start
        ):
            errors["delivery_window_end"] = "Delivery must end after pickup starts."
        for field in ("origin_region", "destination_region"):
            value = getattr(self, field) or ""
            if len(value) != 2 or not value.isalpha() or not value.isupper():
                errors[field] = "Use a two-letter upper-case state code, e.g. TX."
        if errors:
            raise ValidationError(errors)

    @property
    def distance_km(self) -> float:
        return haversine_km(self.origin_lat, self.origin_lon, self.destination_lat, self.destination_lon)


class Tender(models.Model):
    """An offer of a shipment to one carrier, open until it expires or is answered."""

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="tenders")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="tenders")
    status = models.CharField(max_length=20, choices=TenderStatus.choices, default=TenderStatus.PENDING)
    offered_price_usd = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    expires_at = models.DateTimeField()
    # Sent as Idempotency-Key on every mutating call to the carrier about this tender.
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_ref = models.CharField(max_length=120, blank=True, help_text="The carrier's id for this tender")
    waterfall_rank = models.PositiveSmallIntegerField(null=True, blank=True)
    is_fallback = models.BooleanField(default=False)
    status_reason = models.CharField(max_length=300, blank=True)
    # A submit that failed after it may have reached the carrier (a read timeout, a 5xx): whether the
    # carrier holds the tender is unknown until missions.tendering.reconcile asks it again.
    outcome_unknown_since = models.DateTimeField(null=True, blank=True)
    correlation_id = models.UUIDField(db_index=True)
    # W3C traceparent of the span that created it: the load's trace (tms_console.tracing).
    traceparent = models.CharField(max_length=55, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A carrier's tenders in one status, newest first (the partner API's page): read backwards,
            # the index hands over the page's rows in order instead of sorting all of them.
            models.Index(fields=["carrier", "status", "created_at", "id"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(
                fields=["outcome_unknown_since"],
                name="tender_outcome_unknown",
                condition=models.Q(outcome_unknown_since__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Tender {self.pk} {self.shipment.reference} -> {self.carrier.slug}"


class Offer(models.Model):
    """A carrier's answer to a tender: accept, reject or counter with a price."""

    tender = models.ForeignKey(Tender, on_delete=models.PROTECT, related_name="offers")
    kind = models.CharField(max_length=10, choices=OfferKind.choices)
    price_usd = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    vehicle_external_id = models.CharField(max_length=100, blank=True)
    route_id = models.CharField(max_length=100, blank=True)
    eta = models.DateTimeField(null=True, blank=True)
    autonomy_mode = models.CharField(max_length=20, choices=AutonomyMode.choices, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20, default="api")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} on tender {self.tender_id}"


class Mission(models.Model):
    """The execution of a shipment (or its remaining leg) by one carrier and vehicle."""

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="missions")
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="missions")
    tender = models.OneToOneField(Tender, null=True, blank=True, on_delete=models.PROTECT, related_name="mission")
    vehicle = models.ForeignKey(Vehicle, null=True, blank=True, on_delete=models.PROTECT, related_name="missions")
    # Set on a mission that takes over the remaining leg of another (failover).
    replaces = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by")
    route_id = models.CharField(max_length=100, blank=True)
    eta = models.DateTimeField(null=True, blank=True)
    # The line the mission is planned to drive, fixed when it is assigned (missions.routes): [[lat, lon], ...]
    # from origin (or the hand-over point of a failover) to destination, its length, and what it follows
    # (a corridor's name, or the great circle when no known corridor serves the lane).
    planned_route = models.JSONField(default=list, blank=True)
    planned_route_km = models.FloatField(null=True, blank=True)
    planned_route_basis = models.CharField(max_length=120, blank=True)
    autonomy_mode = models.CharField(max_length=20, choices=AutonomyMode.choices, default=AutonomyMode.AUTONOMOUS)
    status = models.CharField(max_length=20, choices=MissionStatus.choices, default=MissionStatus.ASSIGNED)
    status_reason = models.CharField(max_length=300, blank=True)
    price_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    correlation_id = models.UUIDField(db_index=True)
    # W3C traceparent of the span that created it: the load's trace (tms_console.tracing).
    traceparent = models.CharField(max_length=55, blank=True, default="")
    # Kept current by telemetry ingest.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_lat = models.FloatField(null=True, blank=True)
    last_lon = models.FloatField(null=True, blank=True)
    last_speed_kph = models.FloatField(null=True, blank=True)
    human_intervened = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # No index holds last_seen_at or updated_at: ingest moves them on every batch, and an indexed
        # column there would make each of those updates a non-HOT one touching every index of the table.
        indexes = [models.Index(fields=["carrier", "status"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"Mission {self.pk} ({self.shipment.reference})"


class MissionException(models.Model):
    """Something that went wrong on a mission: lost comms, degraded sensors, an emergency stop..."""

    mission = models.ForeignKey(Mission, on_delete=models.PROTECT, related_name="exceptions")
    kind = models.CharField(max_length=40, choices=ExceptionKind.choices)
    status = models.CharField(max_length=10, choices=ExceptionStatus.choices, default=ExceptionStatus.OPEN)
    detail = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    reported_by = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.CARRIER)
    occurred_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    correlation_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["mission", "kind", "status"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on mission {self.mission_id}"


class TelemetrySample(models.Model):
    """A long-term telemetry sample (at most 1 Hz per vehicle after downsampling)."""

    # No database-level foreign keys on this table: every row is written by ingest after it
    # checked the mission's owner and vehicle, and a deferred check per row (two per sample)
    # cost as much at commit as writing the row. The composite indexes serve the joins.
    mission = models.ForeignKey(
        Mission, on_delete=models.CASCADE, related_name="samples", db_constraint=False, db_index=False
    )
    vehicle = models.ForeignKey(
        Vehicle, null=True, on_delete=models.CASCADE, related_name="samples", db_constraint=False, db_index=False
    )
    recorded_at = models.DateTimeField()
    lat = models.FloatField()
    lon = models.FloatField()
    speed_kph = models.FloatField(null=True)
    heading_deg = models.FloatField(null=True)
    autonomy_mode = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict)
    # The event this sample was taken from (traceability; dedupe is by the window and the bucket).
    event_id = models.UUIDField(null=True, blank=True)
    # Whole UTC epoch second of recorded_at: one sample per vehicle per second is the 1 Hz downsampling,
    # enforced by the unique constraint so concurrent batches cannot both keep one.
    bucket_s = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["recorded_at"]
        indexes = [models.Index(fields=["mission", "recorded_at"])]
        constraints = [models.UniqueConstraint(fields=["vehicle", "bucket_s"], name="telemetry_sample_1hz_per_vehicle")]

    def __str__(self) -> str:
        return f"sample {self.mission_id}@{self.recorded_at.isoformat()}"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:  # type: ignore[override]
        raise PermissionError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One append-only record per domain change: who, what, when, before, after, correlation id.

    The rows are the audit trail, the mission and shipment timelines and the
    outbox for live updates (their ids are the replay cursor).
    """

    occurred_at = models.DateTimeField(db_index=True)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=60)
    subject_type = models.CharField(max_length=40)
    subject_id = models.BigIntegerField()
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    # The trace the change was made in: live pushes and worker deliveries of the event continue it.
    traceparent = models.CharField(max_length=55, blank=True, default="")
    shipment = models.ForeignKey(Shipment, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    mission = models.ForeignKey(Mission, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    incident_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["subject_type", "subject_id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.subject_type}:{self.subject_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("Audit events are append-only.")
