"""Incident statuses, severities and kinds."""

from django.db import models


class IncidentStatus(models.TextChoices):
    TRIGGERED = "triggered", "Triggered"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


class IncidentSeverity(models.TextChoices):
    # PagerDuty Events API v2 severities.
    CRITICAL = "critical", "Critical"
    ERROR = "error", "Error"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class IncidentKind(models.TextChoices):
    LOST_COMMS = "lost_comms", "Lost communications"
    DEGRADED_AUTONOMY = "degraded_autonomy", "Autonomy degraded"
    EMERGENCY_STOP = "emergency_stop", "Collision avoidance / emergency stop"
    OTA_FAILURE = "ota_failure", "OTA deployment failure"
    SLA_BREACH = "sla_breach", "SLA breach"
    CARRIER_API_DOWN = "carrier_api_down", "Carrier API failing (circuit open)"
    TENDER_OUT_OF_SYNC = "tender_out_of_sync", "Tender out of sync with the carrier"
    MONITORING_DEGRADED = "monitoring_degraded", "Monitoring degraded (scheduler or broker down)"
    OTHER = "other", "Other"


class StepKind(models.TextChoices):
    AUTOMATED = "automated", "Automated"
    MANUAL = "manual", "Manual checklist item"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class PageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


# How much of a mission's telemetry an incident pins when it opens (and its page summarises).
PIN_MINUTES = 30
