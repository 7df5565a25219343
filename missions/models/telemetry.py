"""Telemetry beyond the long-term samples: the recent full-fidelity window, frozen snapshots, gaps.

``TelemetrySample`` (1 Hz at most per vehicle, kept for the retention period)
lives in ``missions.models.core``; the rows here are short-lived or evidence.
Writes go through ``missions.telemetry.ingest`` and ``missions.telemetry.gaps``.
"""

from __future__ import annotations

from django.db import models

from missions.models.core import Carrier, Mission, MissionException


class TelemetryWindowEvent(models.Model):
    """One accepted event, kept for a short time after it arrived.

    Two jobs: the primary key on the event id is the dedupe record for retries
    (a row lives ``TELEMETRY_DEDUPE_SECONDS`` after arrival), and with the
    samples it holds the full-fidelity window a snapshot freezes when a safety
    event or an exception arrives. An event kept as its vehicle's 1 Hz sample
    is stored whole in that sample row, so its ``payload`` here is empty; the
    other events of the same second (a vehicle reporting faster than 1 Hz)
    keep their normalized payload here.
    """

    event_id = models.UUIDField(primary_key=True)
    # As on TelemetrySample: ingest checked the mission; no per-row deferred check at commit.
    mission = models.ForeignKey(
        Mission, on_delete=models.CASCADE, related_name="window_events", db_constraint=False, db_index=False
    )
    recorded_at = models.DateTimeField()
    # Arrival time: pruning goes by it, so a late (buffered) event still dedupes for the full horizon.
    received_at = models.DateTimeField(db_index=True)
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            # Only the rows that carry a payload are read by mission and time (snapshots).
            models.Index(
                fields=["mission", "recorded_at"],
                name="telem_window_extra_ts",
                condition=models.Q(payload__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_id} (mission {self.mission_id})"


class TelemetrySnapshot(models.Model):
    """The last five minutes of a mission's telemetry, frozen when something went wrong.

    ``sha256`` is over the canonical JSON of ``events`` (sorted keys, no
    spaces, UTF-8) so the snapshot can be cited as evidence and checked later.
    """

    mission = models.ForeignKey(Mission, on_delete=models.PROTECT, related_name="telemetry_snapshots")
    reason = models.CharField(max_length=80)
    trigger_event_id = models.UUIDField(null=True, blank=True)
    exception = models.ForeignKey(
        MissionException, null=True, blank=True, on_delete=models.PROTECT, related_name="telemetry_snapshots"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    events = models.JSONField()
    event_count = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"snapshot {self.pk} of mission {self.mission_id} ({self.reason})"


class TelemetryGap(models.Model):
    """A silence on a mission's telemetry that raised one lost-comms exception.

    Keyed by the mission's ``last_seen_at`` when the silence was found: the
    same silence can never raise twice, and a new one starts only after
    telemetry resumed (``last_seen_at`` moved) and stopped again.

    States: open (no ``resumed_at``), resumed (telemetry came back; the silence
    ran from ``last_seen_at`` to ``resumed_seen_at`` on the vehicle's clock) and
    backfilled (``backfilled_at``: the events the vehicle buffered through the
    silence were uploaded afterwards and no silence as long as ``gap_seconds``
    is left in it; ``missions.telemetry.gaps.telemetry_gaps_backfill``).
    """

    mission = models.ForeignKey(Mission, on_delete=models.CASCADE, related_name="telemetry_gaps")
    last_seen_at = models.DateTimeField()
    gap_seconds = models.PositiveIntegerField()
    detected_at = models.DateTimeField()
    exception = models.ForeignKey(
        MissionException, null=True, blank=True, on_delete=models.SET_NULL, related_name="telemetry_gaps"
    )
    resumed_at = models.DateTimeField(null=True, blank=True)
    # The timestamp (vehicle clock) of the event that ended the silence; empty on gaps closed before it was kept.
    resumed_seen_at = models.DateTimeField(null=True, blank=True)
    backfilled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mission", "last_seen_at"], name="telemetry_gap_once_per_silence")
        ]
        indexes = [models.Index(fields=["mission"], name="telem_gap_open", condition=models.Q(resumed_at__isnull=True))]

    def __str__(self) -> str:
        return f"gap on mission {self.mission_id} since {self.last_seen_at:%Y-%m-%dT%H:%M:%SZ}"

    @property
    def state(self) -> str:
        if self.backfilled_at is not None:
            return "backfilled"
        return "open" if self.resumed_at is None else "resumed"


class DeadLetterStatus(models.TextChoices):
    OPEN = "open", "Waiting for on-call"
    DISCARDED = "discarded", "Discarded"


class DeadLetter(models.Model):
    """A message the telemetry inputs could not take: kept with its reason instead of being lost.

    The MQTT bridge acknowledges a message only once its events are stored, refused one by one,
    or the message is recorded here (a poison message: unreadable, unknown carrier, or one that
    failed to store again and again while others were stored). On-call inspects and discards.
    """

    source = models.CharField(max_length=20)
    topic = models.CharField(max_length=300, blank=True)
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=40)
    reason = models.CharField(max_length=500)
    payload = models.BinaryField()
    payload_bytes = models.PositiveIntegerField()
    received_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=DeadLetterStatus.choices, default=DeadLetterStatus.OPEN)
    discarded_at = models.DateTimeField(null=True, blank=True)
    discarded_by = models.CharField(max_length=150, blank=True)
    discard_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"], name="dead_letter_status")]

    def __str__(self) -> str:
        return f"{self.source} dead letter {self.pk} ({self.kind})"
