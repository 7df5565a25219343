"""SLI names, windows, exclusion kinds and breach statuses."""

from django.db import models


class SLIName(models.TextChoices):
    ON_TIME = "on_time", "On-time delivery rate"
    MISSION_SUCCESS = "mission_success", "Mission success rate"
    TELEMETRY_INTEGRITY = "telemetry_integrity", "Telemetry integrity"
    FAILOVER_TIME = "failover_time", "Time to failover (median)"
    MTTR = "mttr", "Mean time to resolve incidents"
    API_LATENCY = "api_latency_p99", "Carrier API latency (p99)"
    API_ERROR_RATE = "api_error_rate", "Carrier API error rate"


class WindowName(models.TextChoices):
    H1 = "1h", "Rolling 1 hour"
    H24 = "24h", "Rolling 24 hours"
    D7 = "7d", "Rolling 7 days"
    D30 = "30d", "Rolling 30 days"
    MONTH = "month", "Calendar month"


class ExclusionKind(models.TextChoices):
    MAINTENANCE = "maintenance", "Maintenance window"
    FORCE_MAJEURE = "force_majeure", "Force majeure"


class BreachStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    CONFIRMED = "confirmed", "Confirmed"
    DISPUTED = "disputed", "Disputed"


class AlertSeverity(models.TextChoices):
    PAGE = "page", "Page"
    TICKET = "ticket", "Ticket"


# The severity an SLA-breach incident has while alerts of that severity burn (PagerDuty's words).
INCIDENT_SEVERITY_OF_ALERT = {AlertSeverity.PAGE: "critical", AlertSeverity.TICKET: "warning"}
