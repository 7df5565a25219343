"""Evidence: signed attestations, the append-only transparency log and its signed checkpoints.

The formats are in ``docs/evidence.md``; the writes go through ``missions.evidence.services``.
Log entries and checkpoints are append-only: the models refuse updates and deletes, and on
PostgreSQL a trigger refuses them at the database level too (migration ``*_evidence``), so
not even raw SQL can rewrite history without leaving the log inconsistent with a checkpoint
somebody already holds.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models

from missions.models.core import Mission


class AttestationKind(models.TextChoices):
    """What an attestation attests; the values are ``dsse.StatementKind`` values."""

    MISSION_ASSIGNMENT = "mission-assignment", "Mission assignment"
    AUTONOMY_MODE_CHANGE = "autonomy-mode-change", "Autonomy mode change"
    MISSION_OUTCOME = "mission-outcome", "Mission completion or failure"
    TELEMETRY_SNAPSHOT = "telemetry-snapshot", "Telemetry snapshot"
    INCIDENT_REVIEW = "incident-review", "Incident review"
    SLA_BREACH_VERDICT = "sla-breach-verdict", "SLA breach verdict"
    TELEMETRY_BACKFILL = "telemetry-backfill", "Telemetry gap backfilled"
    CARRIER_CONFORMANCE = "carrier-conformance", "Carrier conformance certification"


class AttestationSubjectType(models.TextChoices):
    """The kind of row an attestation is about (``subject_id`` is its primary key)."""

    MISSION = "mission", "Mission"
    SNAPSHOT = "snapshot", "Telemetry snapshot"
    INCIDENT = "incident", "Incident"
    BREACH = "breach", "SLA breach"
    CERTIFICATION = "certification", "Certification run"


_M = TypeVar("_M", bound=models.Model)


class AppendOnlyQuerySet(models.QuerySet[_M]):
    """Bulk updates and deletes are refused: evidence rows are written once."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError(f"{self.model.__name__} rows are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:  # type: ignore[override]
        raise PermissionError(f"{self.model.__name__} rows are append-only.")


class AppendOnlyModel(models.Model):
    """A model whose rows can be inserted but never changed or removed through the ORM."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise PermissionError(f"{type(self).__name__} rows are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError(f"{type(self).__name__} rows are append-only.")


class Attestation(AppendOnlyModel):
    """One signed in-toto statement (a DSSE envelope) about a mission, snapshot, incident or breach.

    At most one per (kind, subject, source event): the audit event that caused it (0 when the
    subject itself is the event, e.g. a frozen snapshot), so a retried task never signs twice.
    """

    kind = models.CharField(max_length=40, choices=AttestationKind.choices)
    subject_type = models.CharField(max_length=20, choices=AttestationSubjectType.choices)
    subject_id = models.BigIntegerField()
    # The AuditEvent id that caused the attestation; 0 when there is none.
    source_event_id = models.BigIntegerField(default=0)
    # Denormalised for the mission page and mission bundles (snapshots and incidents belong to one).
    mission = models.ForeignKey(Mission, null=True, blank=True, on_delete=models.PROTECT, related_name="attestations")
    envelope = models.JSONField()
    # SHA-256 (hex) of the envelope payload bytes, i.e. of the canonical in-toto statement.
    payload_sha256 = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16)
    # The carrier's own signature material when its message was signed (Standard Webhooks headers).
    carrier_signature = models.JSONField(null=True, blank=True)
    log_index = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["log_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject_type", "subject_id", "source_event_id"], name="attestation_once_per_event"
            )
        ]
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="attestation_subject")]

    def __str__(self) -> str:
        return f"attestation {self.log_index}: {self.kind} {self.subject_type}:{self.subject_id}"


class TransparencyLogEntry(AppendOnlyModel):
    """Leaf ``index`` of the Merkle log: RFC 6962 leaf hash of SHA-256(PAE(statement)).

    The log holds hashes only, so purging raw telemetry never changes a leaf or a proof.
    """

    index = models.BigIntegerField(unique=True)
    leaf_hash = models.BinaryField(max_length=32)
    attestation = models.OneToOneField(Attestation, on_delete=models.PROTECT, related_name="log_entry")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["index"]
        verbose_name_plural = "transparency log entries"

    def __str__(self) -> str:
        return f"log leaf {self.index}"


class TransparencyLogHead(models.Model):
    """The single row that serialises appends and keeps the log's compact range.

    Appenders lock it (``select_for_update``) so leaf indexes are strictly sequential without
    gaps; ``frontier`` (``MerkleFrontier.to_list()``, concatenated 32-byte hashes) gives the
    current root without re-reading the log table.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    tree_size = models.BigIntegerField(default=0)
    frontier = models.BinaryField(default=b"")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"log head at size {self.tree_size}"


class Checkpoint(AppendOnlyModel):
    """A signed tree head: the C2SP tlog-checkpoint note for ``tree_size`` leaves.

    Stored only after a consistency proof from the previous checkpoint verified.
    """

    tree_size = models.BigIntegerField(unique=True)
    root_hash = models.BinaryField(max_length=32)
    note = models.TextField(help_text="The signed note (C2SP signed-note / tlog-checkpoint)")
    key_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-tree_size"]
        get_latest_by = "tree_size"

    def __str__(self) -> str:
        return f"checkpoint at size {self.tree_size}"
