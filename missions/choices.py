"""Statuses, modes and kinds used across the missions app."""

from django.db import models


class CarrierKind(models.TextChoices):
    AUTONOMOUS = "autonomous", "Autonomous"
    HUMAN_DRIVEN = "human_driven", "Human-driven"


class CarrierStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    # Invited, not yet live: never offered a tender (missions.onboarding).
    ONBOARDING = "onboarding", "Onboarding"


class AutonomyMode(models.TextChoices):
    AUTONOMOUS = "autonomous", "Autonomous"
    SUPERVISED = "supervised", "Supervised"
    MANUAL = "manual", "Manual (human driver)"
    SAFE_HOLD = "safe_hold", "Safe hold (minimal-risk condition)"


class ShipmentStatus(models.TextChoices):
    OPEN = "open", "Open"
    TENDERING = "tendering", "Tendering"
    ASSIGNED = "assigned", "Assigned"
    IN_TRANSIT = "in_transit", "In transit"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class TenderStatus(models.TextChoices):
    PENDING = "pending", "Pending (not yet sent)"
    SENT = "sent", "Sent"
    COUNTERED = "countered", "Countered"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed (carrier unreachable)"


class OfferKind(models.TextChoices):
    ACCEPT = "accept", "Accept"
    REJECT = "reject", "Reject"
    COUNTER = "counter", "Counter"


class MissionStatus(models.TextChoices):
    ASSIGNED = "assigned", "Assigned"
    EN_ROUTE = "en_route", "En route"
    ARRIVING = "arriving", "Arriving"
    UNLOADING = "unloading", "Unloading"
    SUSPENDED = "suspended", "Suspended"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    HANDED_OVER = "handed_over", "Handed over (failover)"


class ExceptionKind(models.TextChoices):
    LOST_COMMS = "lost_comms", "Lost communications"
    DEGRADED_SENSORS = "degraded_sensors", "Degraded sensors"
    MODE_DEGRADED = "mode_degraded", "Autonomy degraded to supervised"
    REROUTE_REQUEST = "reroute_request", "Reroute request"
    EMERGENCY_STOP = "emergency_stop", "Emergency stop"
    COLLISION_AVOIDANCE = "collision_avoidance", "Collision avoidance"
    HUMAN_INTERVENTION_REQUIRED = "human_intervention_required", "Human intervention required"
    OTA_FAILURE = "ota_failure", "OTA deployment failure"
    DELAYED = "delayed", "Shipment delayed (carrier-reported)"


class ExceptionStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class ActorKind(models.TextChoices):
    USER = "user", "Console user"
    CARRIER = "carrier", "Carrier"
    SYSTEM = "system", "System"


class CircuitState(models.TextChoices):
    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half_open", "Half-open"
