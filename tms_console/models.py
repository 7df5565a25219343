"""Kernel tables: the console-wide permissions anchor, process heartbeats and leases."""

from django.db import models

from tms_console.permission_codes import PERMISSIONS


class ConsoleAccess(models.Model):
    """Anchor for the console's global permissions; never stores rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = list(PERMISSIONS.items())

    def __str__(self) -> str:
        return "console access"


class ProcessHeartbeat(models.Model):
    """When a background process last showed it was alive: beat, the worker pipeline, the MQTT bridge.

    ``worker`` is written by the heartbeat task, so a fresh row proves beat, the broker
    and a worker all work; ``beat`` is written by the beat process itself, so the two
    together tell a dead scheduler from a dead broker or worker.
    """

    name = models.CharField(max_length=60, primary_key=True)
    seen_at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        default_permissions = ()  # internal bookkeeping: no admin permissions of its own

    def __str__(self) -> str:
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class Lease(models.Model):
    """A named lease in the database: at most one process holds it until ``expires_at``."""

    name = models.CharField(max_length=60, primary_key=True)
    holder = models.CharField(max_length=120)
    expires_at = models.DateTimeField()

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%H:%M:%S}"


class RateCounter(models.Model):
    """Requests (or failed guesses) counted in one window of one limit, when no Redis is configured.

    ``tms_console.ratelimit`` increments a row with one atomic ``INSERT ... ON
    CONFLICT DO UPDATE ... WHERE hits + cost <= cap`` statement, so concurrent
    requests in every process see each other's counts; rows are dead two
    windows after they start (``expires_at``, Unix seconds) and purged then.
    """

    bucket = models.CharField(max_length=200)
    window_index = models.BigIntegerField()
    hits = models.IntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "window_index"], name="ratecounter_bucket_window")]
        default_permissions = ()  # machinery, not something anyone is granted

    def __str__(self) -> str:
        return f"{self.bucket}@{self.window_index}: {self.hits}"


class TraceSpan(models.Model):
    """One finished span in the embedded span store (``tms_console.trace_store``).

    Written in batches by every process when no OTLP collector is configured;
    bounded by age and count. Its links to spans of other traces (a telemetry
    batch to its missions' traces) are ``TraceLink`` rows.
    """

    trace_id = models.CharField(max_length=32, db_index=True)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=200)
    service = models.CharField(max_length=60)
    kind = models.CharField(max_length=10)
    started_at = models.DateTimeField(db_index=True)
    duration_ms = models.FloatField()
    error = models.BooleanField(default=False)
    status_message = models.CharField(max_length=300, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)

    class Meta:
        default_permissions = ()
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id[:8]}/{self.span_id})"


class TraceLink(models.Model):
    """A stored span's link to a span of another trace, so a trace's page can list what points at it."""

    from_span = models.ForeignKey(TraceSpan, on_delete=models.CASCADE, related_name="links")
    trace_id = models.CharField(max_length=32, db_index=True)
    span_id = models.CharField(max_length=16)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"-> {self.trace_id[:8]}/{self.span_id}"
