"""Writes for evidence: sign attestations, append them to the log, issue checkpoints, build bundles.

The log is strictly sequential: an appender locks the single ``TransparencyLogHead`` row
(``select_for_update``), takes ``tree_size`` as its leaf index and advances the head's compact
range in the same transaction, so indexes never repeat or skip and the current root is known
without re-reading the table. A checkpoint is stored only after a consistency proof from the
previous checkpoint, computed from the table, verified against the head's root.

No audit events are written here: attestations, log entries and checkpoints are themselves
append-only records (who signed what, when, at which index), and an audit event per attestation
would only restate the event being attested.

Hooks: ``missions.evidence.subscribers`` subscribes to the domain events that call for an
attestation; after the change commits a worker builds the statement from the rows and calls
``attestation_for_event``. One attestation per (kind, subject, causing audit event).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from missions.evidence import dsse, merkle
from missions.evidence.bundle import LoggedStatement, Snapshot, bundle_build, envelope_leaf_hash
from missions.evidence.checkpoint import checkpoint_sign
from missions.evidence.keys import Signer
from missions.evidence.note import NoteSigner
from missions.evidence.selectors import (
    URN,
    ProofRequestError,
    breach_urn,
    checkpoint_latest,
    consistency_proof,
    inclusion_proof,
    leaf_source,
    mission_urn,
    statement_for,
)
from missions.evidence.signing import evidence_keyring, evidence_signer, log_origin
from missions.evidence.verify_core import Checkpoint as CheckpointBody
from missions.evidence.verify_core import ProofError
from missions.models import AuditEvent, Mission
from missions.models.evidence import (
    Attestation,
    AttestationKind,
    AttestationSubjectType,
    Checkpoint,
    TransparencyLogEntry,
    TransparencyLogHead,
)
from missions.models.telemetry import TelemetrySnapshot
from tms_console.domain import Conflict, NotFound

log = logging.getLogger(__name__)

__all__ = [
    "AttestationSubject",
    "EvidenceLogInconsistent",
    "EvidenceSigningUnavailable",
    "ProofRequestError",
    "attestation_create",
    "attestation_for_event",
    "carrier_signature_current",
    "carrier_signed",
    "checkpoint_issue",
    "consistency_proof",
    "evidence_bundle_for_breach",
    "evidence_bundle_for_mission",
    "inclusion_proof",
]


class EvidenceSigningUnavailable(RuntimeError):
    """No signing key is configured (production): the attestation is skipped."""


class EvidenceLogInconsistent(RuntimeError):
    """The log table does not extend the previous checkpoint: somebody rewrote history."""


@dataclass(frozen=True)
class AttestationSubject:
    """What an attestation is about: a row (type and id) and the mission it belongs to, if any."""

    type: str
    id: int
    mission_id: int | None = None


# ---------------------------------------------------------------- the carrier's own signature

_carrier_signature: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "evidence_carrier_signature", default=None
)


@contextlib.contextmanager
def carrier_signed(material: Mapping[str, Any]) -> Iterator[None]:
    """Mark the domain changes made inside as caused by a message the carrier signed.

    ``material`` is what proves it (e.g. ``{"scheme": "standard-webhooks-v1", "webhook-id": ...,
    "webhook-timestamp": ..., "webhook-signature": ..., "body_sha256": ...}``); attestations hooked
    in the block keep it beside our signature.
    """
    token = _carrier_signature.set(dict(material))
    try:
        yield
    finally:
        _carrier_signature.reset(token)


def carrier_signature_current() -> Mapping[str, Any] | None:
    """The carrier signature of the message being handled, if a ``carrier_signed`` block is open."""
    return _carrier_signature.get()


# ---------------------------------------------------------------- appending


def _head_locked() -> TransparencyLogHead:
    head = TransparencyLogHead.objects.select_for_update().filter(pk=1).first()
    if head is not None:
        return head
    try:
        with transaction.atomic():
            TransparencyLogHead.objects.create(pk=1)
    except IntegrityError:
        pass  # created by a concurrent appender; lock theirs
    return TransparencyLogHead.objects.select_for_update().get(pk=1)


def _frontier(head: TransparencyLogHead) -> merkle.MerkleFrontier:
    raw = bytes(head.frontier)
    return merkle.MerkleFrontier.from_list(head.tree_size, [raw[i : i + 32] for i in range(0, len(raw), 32)])


def _signer_required() -> Signer:
    signer = evidence_signer()
    if signer is None:
        raise EvidenceSigningUnavailable("no evidence signing key is configured")
    return signer


@transaction.atomic
def attestation_create(
    *,
    kind: str,
    subject: AttestationSubject,
    statement: Mapping[str, Any],
    carrier_signature: Mapping[str, Any] | None = None,
    source_event_id: int = 0,
) -> Attestation:
    """Sign ``statement`` as a DSSE envelope and append it to the log as the next leaf.

    Idempotent per (kind, subject, source event): a second call returns the first attestation.
    Raises ``EvidenceSigningUnavailable`` when no key is configured.
    """
    if kind not in AttestationKind.values:
        raise ValueError(f"unknown attestation kind {kind!r}")
    if subject.type not in AttestationSubjectType.values:
        raise ValueError(f"unknown attestation subject type {subject.type!r}")
    key = {"kind": kind, "subject_type": subject.type, "subject_id": subject.id, "source_event_id": source_event_id}
    existing = Attestation.objects.filter(**key).first()
    if existing is not None:
        return existing
    signer = _signer_required()
    envelope = dsse.statement_sign(statement, [signer])
    leaf = envelope_leaf_hash(envelope)
    # The head lock serialises appenders: the index is the tree size, strictly sequential.
    head = _head_locked()
    existing = Attestation.objects.filter(**key).first()  # a concurrent task may have won meanwhile
    if existing is not None:
        return existing
    index = head.tree_size
    payload = dsse.envelope_parse(envelope).payload
    attestation = Attestation.objects.create(
        **key,
        mission_id=subject.mission_id,
        envelope=envelope,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        key_id=signer.key_id,
        carrier_signature=dict(carrier_signature) if carrier_signature else None,
        log_index=index,
    )
    TransparencyLogEntry.objects.create(index=index, leaf_hash=leaf, attestation=attestation)
    frontier = _frontier(head)
    frontier.append(leaf)
    head.tree_size = frontier.size
    head.frontier = b"".join(frontier.to_list())
    head.save(update_fields=["tree_size", "frontier", "updated_at"])
    return attestation


def attestation_for_event(
    *,
    kind: str,
    subject_type: str,
    subject_id: int,
    event_id: int | None,
    carrier_signature: Mapping[str, Any] | None = None,
) -> Attestation | None:
    """Build the statement for a domain row from the database and attest it (the task's body).

    None when the row does not call for it (e.g. a cancellation) or no key is configured
    (logged as an error: production without a key still runs).
    """
    event_key = event_id or 0
    existing = Attestation.objects.filter(
        kind=kind, subject_type=subject_type, subject_id=subject_id, source_event_id=event_key
    ).first()
    if existing is not None:
        return existing
    event = AuditEvent.objects.filter(pk=event_id).first() if event_id else None
    built = statement_for(
        kind=kind, subject_type=subject_type, subject_id=subject_id, event=event, carrier_signature=carrier_signature
    )
    if built is None:
        return None
    statement, mission_id = built
    try:
        return attestation_create(
            kind=kind,
            subject=AttestationSubject(subject_type, subject_id, mission_id),
            statement=statement,
            carrier_signature=carrier_signature,
            source_event_id=event_key,
        )
    except EvidenceSigningUnavailable:
        log.error(
            "attestation skipped: no evidence signing key configured",
            extra={"event": "evidence.attestation_skipped", "kind": kind, "subject": f"{subject_type}:{subject_id}"},
        )
        return None


# ---------------------------------------------------------------- checkpoints


def _consistency_check(previous: Checkpoint | None, size: int, root: bytes) -> None:
    """Prove, from the table, that the tree (size, root) extends the previous checkpoint."""
    source = leaf_source(size)
    try:
        if previous is None:
            if merkle.tree_root(source, size) != root:
                raise ProofError("the log table does not hash to the head's root")
            return
        proof = merkle.consistency_proof(source, previous.tree_size, size)
        merkle.verify_consistency(previous.tree_size, size, proof, bytes(previous.root_hash), root)
    except (ProofError, ValueError) as exc:
        log.critical(
            "evidence log is inconsistent with its previous checkpoint: %s",
            exc,
            extra={"event": "evidence.log_inconsistent", "tree_size": size},
        )
        raise EvidenceLogInconsistent(str(exc)) from exc


def checkpoint_issue() -> Checkpoint | None:
    """Sign a checkpoint for the current log size, if it grew; returns the latest checkpoint.

    The proof is computed outside any lock (leaves below a pinned size never change); storing
    takes the head lock, so concurrent issuers serialise and each new checkpoint is checked
    against the one actually before it. None for an empty log or without a key.
    """
    signer = evidence_signer()
    if signer is None:
        log.error("checkpoint skipped: no evidence signing key configured", extra={"event": "evidence.no_key"})
        return checkpoint_latest()
    origin = log_origin()
    for _attempt in range(3):
        head = TransparencyLogHead.objects.filter(pk=1).first()
        previous = checkpoint_latest()
        if head is None or head.tree_size == 0:
            return previous
        if previous is not None and previous.tree_size >= head.tree_size:
            return previous
        size, root = head.tree_size, _frontier(head).root()
        _consistency_check(previous, size, root)
        note = checkpoint_sign(CheckpointBody(origin, size, root), NoteSigner(origin, signer))
        with transaction.atomic():
            _head_locked()
            latest = checkpoint_latest()
            if (latest.pk if latest else None) != (previous.pk if previous else None):
                continue  # another issuer stored one meanwhile: prove against that one instead
            return Checkpoint.objects.create(tree_size=size, root_hash=root, note=note, key_id=signer.key_id)
    return checkpoint_latest()


def _checkpoint_covering(max_index: int) -> Checkpoint:
    checkpoint = checkpoint_latest()
    if checkpoint is None or checkpoint.tree_size <= max_index:
        checkpoint = checkpoint_issue()
    if checkpoint is None or checkpoint.tree_size <= max_index:
        raise Conflict("No checkpoint covers this evidence yet; try again shortly.")
    return checkpoint


# ---------------------------------------------------------------- bundles


def _bundle(subject: str, attestations: list[Attestation]) -> bytes:
    if not attestations:
        raise Conflict("Nothing has been attested for this yet.")
    checkpoint = _checkpoint_covering(max(a.log_index for a in attestations))
    statements = [
        LoggedStatement(
            a.envelope,
            a.log_index,
            checkpoint.tree_size,
            inclusion_proof(index=a.log_index, tree_size=checkpoint.tree_size),
        )
        for a in attestations
    ]
    snapshots = [_snapshot_for(a) for a in attestations if a.kind == AttestationKind.TELEMETRY_SNAPSHOT]
    ring = evidence_keyring()
    # Checkpoint keys and statement keys: everything a verifier needs that we still publish.
    wanted = {checkpoint.key_id, *(a.key_id for a in attestations)}
    keys = [key for key_id, key in sorted(ring.as_dict().items()) if key_id in wanted]
    return bundle_build(
        subject=subject,
        statements=statements,
        checkpoint_note=checkpoint.note,
        public_keys=keys,
        snapshots=snapshots,
    )


def _snapshot_for(attestation: Attestation) -> Snapshot:
    """The snapshot's JSON lines as frozen, or a purged marker once its events are gone.

    Content that no longer matches is sent as it is: the verifier then reports the mismatch
    instead of the bundle hiding it behind "purged".
    """
    statement = dsse.envelope_statement(attestation.envelope)
    name = str(statement["subject"][0]["name"])
    snapshot = TelemetrySnapshot.objects.filter(pk=attestation.subject_id).first()
    if snapshot is None or (snapshot.event_count and not snapshot.events):
        return Snapshot(name, None)
    return Snapshot(name, dsse.snapshot_encode(list(snapshot.events)))


def evidence_bundle_for_mission(mission_id: int) -> bytes:
    """The mission's statements (its own, snapshots, incident reviews), proofs, checkpoint and keys."""
    if not Mission.objects.filter(pk=mission_id).exists():
        raise NotFound(f"Mission {mission_id} does not exist.")
    attestations = list(Attestation.objects.filter(mission_id=mission_id).order_by("log_index"))
    if not any(a.subject_type == AttestationSubjectType.MISSION for a in attestations):
        raise Conflict("The mission has no attested events yet.")
    return _bundle(mission_urn(mission_id), attestations)


def evidence_bundle_for_certification(run_id: int) -> bytes:
    """A certification run's signed statement with its inclusion proof, the checkpoint and the keys."""
    attestations = list(
        Attestation.objects.filter(
            subject_type=AttestationSubjectType.CERTIFICATION,
            kind=AttestationKind.CARRIER_CONFORMANCE,
            subject_id=run_id,
        ).order_by("log_index")
    )
    return _bundle(f"{URN}:certification:{run_id}", attestations)


def evidence_bundle_for_breach(breach_id: int) -> bytes:
    """The breach's verdict statements with their proofs, the checkpoint and the keys."""
    attestations = list(
        Attestation.objects.filter(subject_type=AttestationSubjectType.BREACH, subject_id=breach_id).order_by(
            "log_index"
        )
    )
    return _bundle(breach_urn(breach_id), attestations)
