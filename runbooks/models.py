"""Incidents (first cut: status machine, links, timestamps, review)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from missions.models import Carrier, Mission, Vehicle
from runbooks.choices import (
    IncidentKind,
    IncidentSeverity,
    IncidentStatus,
    PageStatus,
    RunStatus,
    StepKind,
    StepStatus,
)


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
    # Recovery measures for the SLA engine, from recorded timestamps.
    failover_at = models.DateTimeField(null=True, blank=True)
    time_to_failover_seconds = models.FloatField(null=True, blank=True)
    time_to_recovery_seconds = models.FloatField(null=True, blank=True)
    # The mission's last 30 minutes of telemetry (long-term samples), pinned when the incident opened.
    pinned_telemetry = models.JSONField(default=list, blank=True)
    # The incident's own trace (its runbook steps, pages and failover tenders join it), and the
    # trace that led to it (its mission's), pinned when it opened: W3C traceparents.
    traceparent = models.CharField(max_length=55, blank=True, default="")
    pinned_traceparent = models.CharField(max_length=55, blank=True, default="")

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


class Runbook(models.Model):
    """A versioned runbook: the ordered steps on-call and automation follow for one kind of incident.

    Editing a runbook creates a new version; a run keeps the version it started with.
    """

    slug = models.SlugField(max_length=60)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=120)
    incident_kind = models.CharField(max_length=30, choices=IncidentKind.choices)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug", "-version"]
        constraints = [models.UniqueConstraint(fields=["slug", "version"], name="runbook_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class RunbookStep(models.Model):
    """One step: an automated action (a Celery-run function) or a manual checklist item."""

    runbook = models.ForeignKey(Runbook, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=StepKind.choices)
    # Name in runbooks.actions.ACTIONS for automated steps.
    action = models.CharField(max_length=60, blank=True)
    params = models.JSONField(default=dict, blank=True)
    instructions = models.TextField(blank=True)
    # Automated: how long the action may wait for its condition (e.g. recovery) before moving on.
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_attempts = models.PositiveSmallIntegerField(default=3)

    class Meta:
        ordering = ["runbook_id", "position"]
        constraints = [models.UniqueConstraint(fields=["runbook", "position"], name="runbook_step_position_unique")]

    def __str__(self) -> str:
        return f"{self.runbook.slug} #{self.position}: {self.title}"


class RunbookRun(models.Model):
    """The execution of a runbook for one incident."""

    incident = models.OneToOneField(Incident, on_delete=models.PROTECT, related_name="run")
    runbook = models.ForeignKey(Runbook, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    # Facts steps pass on to later steps' conditions, e.g. {"recovered": true, "fallback": null}.
    context = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"run of {self.runbook} for incident {self.incident_id}"


class StepRun(models.Model):
    """The state of one step in one run.

    ``lease_until`` makes automated steps safe across worker crashes: a
    worker owns a RUNNING step until its lease ends; after that another
    worker may take it over and re-run the (idempotent) action.
    """

    run = models.ForeignKey(RunbookRun, on_delete=models.CASCADE, related_name="step_runs")
    step = models.ForeignKey(RunbookStep, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    wait_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["run_id", "step__position"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="step_run_unique")]

    def __str__(self) -> str:
        return f"{self.step} [{self.status}]"


class PagerMessage(models.Model):
    """One PagerDuty Events API v2 call (trigger / acknowledge / resolve) for an incident."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="pages")
    event_action = models.CharField(max_length=12)
    dedup_key = models.CharField(max_length=255)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=PageStatus.choices, default=PageStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.event_action} for incident {self.incident_id} [{self.status}]"
