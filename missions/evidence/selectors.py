"""Reads for evidence: statements built from domain rows, log proofs, the mission page's rows.

Nothing here writes. The statement builders turn a database row (and the audit event that
caused the attestation) into an in-toto statement with ``dsse``'s builders; every value goes
through ``plain`` so the canonical JSON is the same in any process.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet

from missions.evidence import dsse, merkle
from missions.evidence.bundle import envelope_leaf_hash
from missions.evidence.checkpoint import checkpoint_open
from missions.evidence.keys import KeyRing
from missions.evidence.note import NoteVerifier
from missions.evidence.signing import evidence_keyring, log_origin
from missions.evidence.verify_core import EvidenceError
from missions.models import AuditEvent, Mission, RoutePlan, TelemetrySample
from missions.models.evidence import (
    Attestation,
    AttestationKind,
    AttestationSubjectType,
    Checkpoint,
    TransparencyLogEntry,
    TransparencyLogHead,
)
from missions.models.telemetry import TelemetrySnapshot

URN = "urn:tms-console"

log = logging.getLogger(__name__)


class ProofRequestError(ValueError):
    """A proof was asked for sizes or indexes the log cannot answer."""


# ---------------------------------------------------------------- names


def mission_urn(mission_id: int) -> str:
    return f"{URN}:mission:{mission_id}"


def snapshot_urn(mission_id: int, snapshot_id: int) -> str:
    return f"{URN}:telemetry-snapshot:{mission_id}:{snapshot_id}"


def breach_urn(breach_id: int) -> str:
    return f"{URN}:sla-breach:{breach_id}"


def plain(value: Any) -> Any:
    """JSON-ready values with one spelling each (UTC ISO 8601, decimals as strings)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN cannot be canonical JSON
        return None
    return value


def event_fields(event: AuditEvent | None) -> dict[str, Any]:
    if event is None:
        return {}
    return {
        "event": event.pk,
        "at": event.occurred_at,
        "actor": event.actor_label,
        "actorKind": event.actor_kind,
        "before": event.before,
        "after": event.after,
        "data": event.data or {},
    }


# ---------------------------------------------------------------- statements from rows


def _route_plan_record(mission: Mission) -> dict[str, Any]:
    """The mission's verified route plan (its latest version), by digest: empty when it has none."""
    plan = RoutePlan.objects.filter(mission_id=mission.pk).select_related("signing_key").order_by("-version").first()
    if plan is None:
        return {}
    return {
        "routePlan": {
            "version": plan.version,
            "digest": {"sha256": plan.sha256},
            "size": plan.size_bytes,
            "keyId": plan.signing_key.key_id,
            "validFrom": plan.valid_from,
            "validUntil": plan.valid_until,
        }
    }


def _mission_record(mission: Mission, event: AuditEvent | None) -> dict[str, Any]:
    return {
        "mission": mission.pk,
        "shipment": mission.shipment.reference,
        "carrier": mission.carrier.slug,
        "vehicle": mission.vehicle.external_id if mission.vehicle else None,
        "tender": mission.tender_id,
        "route": mission.route_id,
        "eta": mission.eta,
        "priceUsd": mission.price_usd,
        "correlationId": mission.correlation_id,
        **_route_plan_record(mission),
        **event_fields(event),
    }


def mission_vehicle_certificates(mission_id: int) -> list[str]:
    """The ``sha256:<hex>`` fingerprints of the vehicle SVIDs the mission's telemetry samples were received with."""
    found = (
        TelemetrySample.objects.filter(mission_id=mission_id, data__has_key="vehicle_cert")
        .values_list("data__vehicle_cert", flat=True)
        .distinct()
    )
    return sorted({str(value) for value in found if value})


# Statements about rows that live above the evidence layer (incidents, SLA breaches) are built by
# the app that owns the row, which registers its builder from its AppConfig.ready.
StatementBuilder = Callable[[int, AuditEvent | None], "tuple[dict[str, Any], int | None] | None"]
_statement_builders: dict[str, StatementBuilder] = {}


def statement_builder_register(kind: str, builder: StatementBuilder) -> None:
    """Let the app that owns ``kind``'s subject build its statement: (statement, mission id) or None."""
    if kind not in AttestationKind.values:
        raise ValueError(f"unknown attestation kind {kind!r}")
    _statement_builders[kind] = builder


def statement_for(
    *,
    kind: str,
    subject_type: str,
    subject_id: int,
    event: AuditEvent | None,
    carrier_signature: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], int | None] | None:
    """The in-toto statement for ``kind`` about a row, and the mission it belongs to.

    None when the row does not (or no longer) call for this kind, e.g. an outcome event that
    is a cancellation, or an incident closed without a review.
    """
    mission_kinds = (
        AttestationKind.MISSION_ASSIGNMENT,
        AttestationKind.AUTONOMY_MODE_CHANGE,
        AttestationKind.MISSION_OUTCOME,
        AttestationKind.TELEMETRY_BACKFILL,
    )
    if kind in mission_kinds:
        if subject_type != AttestationSubjectType.MISSION:
            raise ValueError(f"{kind} attests a mission, not a {subject_type}")
        mission = Mission.objects.select_related("shipment", "carrier", "vehicle").get(pk=subject_id)
        record = plain(_mission_record(mission, event))
        certificates = mission_vehicle_certificates(mission.pk)
        if certificates:
            # The vehicle's SVIDs (sha256 fingerprints) its telemetry was received with (docs/identity.md).
            record["vehicleCertificates"] = certificates
        if kind == AttestationKind.MISSION_ASSIGNMENT:
            statement = dsse.mission_assignment_statement(
                mission_ref=str(mission.pk), record=record, carrier_signature=carrier_signature
            )
        elif kind == AttestationKind.TELEMETRY_BACKFILL:
            # The record's event data: the gap, its silence, threshold and the digest of the samples filling it.
            statement = dsse.telemetry_backfill_statement(
                mission_ref=str(mission.pk), record=record, carrier_signature=carrier_signature
            )
        elif kind == AttestationKind.AUTONOMY_MODE_CHANGE:
            before = (event.before or {}) if event else {}
            after = (event.after or {}) if event else {}
            statement = dsse.autonomy_mode_change_statement(
                mission_ref=str(mission.pk),
                from_mode=str(before.get("autonomy_mode", "")),
                to_mode=str(after.get("autonomy_mode", mission.autonomy_mode)),
                record=record,
                carrier_signature=carrier_signature,
            )
        else:
            outcome = str(((event.after or {}) if event else {}).get("status", mission.status))
            if outcome not in ("completed", "failed"):
                return None
            statement = dsse.mission_outcome_statement(
                mission_ref=str(mission.pk),
                outcome=outcome,  # type: ignore[arg-type]
                record=record,
                carrier_signature=carrier_signature,
            )
        return statement, mission.pk
    if kind == AttestationKind.TELEMETRY_SNAPSHOT:
        snapshot = TelemetrySnapshot.objects.get(pk=subject_id)
        statement = dsse.telemetry_snapshot_statement(
            snapshot_name=snapshot_urn(snapshot.mission_id, snapshot.pk),
            mission_ref=str(snapshot.mission_id),
            events_jsonl=dsse.snapshot_encode(list(snapshot.events)),
            extra=plain(
                {
                    "reason": snapshot.reason,
                    "windowStart": snapshot.window_start,
                    "windowEnd": snapshot.window_end,
                    "exception": snapshot.exception_id,
                }
            ),
        )
        return statement, snapshot.mission_id
    builder = _statement_builders.get(kind)
    if builder is not None:
        return builder(subject_id, event)
    raise ValueError(f"unknown attestation kind {kind!r}")


# Which audit event causes each kind (the idempotency key is that event's id).
KIND_ACTIONS: dict[str, tuple[str, ...]] = {
    AttestationKind.MISSION_ASSIGNMENT: ("mission.created",),
    AttestationKind.AUTONOMY_MODE_CHANGE: ("mission.mode_changed",),
    AttestationKind.MISSION_OUTCOME: ("mission.status_changed",),
    AttestationKind.TELEMETRY_SNAPSHOT: ("telemetry.snapshot_frozen",),
    AttestationKind.INCIDENT_REVIEW: ("incident.status_changed",),
    AttestationKind.SLA_BREACH_VERDICT: ("sla.breach_decided",),
    AttestationKind.TELEMETRY_BACKFILL: ("mission.telemetry_backfilled",),
}


def source_event_latest(*, kind: str, subject_type: str, subject_id: int) -> AuditEvent | None:
    """The newest audit event of the action that causes ``kind`` for this subject."""
    actions = KIND_ACTIONS.get(kind, ())
    if not actions:
        return None
    return (
        AuditEvent.objects.filter(subject_type=subject_type, subject_id=subject_id, action__in=actions)
        .order_by("-id")
        .first()
    )


# ---------------------------------------------------------------- the log


def log_size() -> int:
    head = TransparencyLogHead.objects.filter(pk=1).only("tree_size").first()
    return head.tree_size if head else 0


def leaf_hashes(start: int, end: int) -> list[bytes]:
    """Leaf hashes of entries start..end-1 in one range query (``merkle.LeafSource`` fetch)."""
    rows = (
        TransparencyLogEntry.objects.filter(index__gte=start, index__lt=end)
        .order_by("index")
        .values_list("leaf_hash", flat=True)
    )
    return [bytes(h) for h in rows]


def leaf_source(size: int) -> merkle.LeafSource:
    return merkle.LeafSource(size, leaf_hashes)


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-tree_size").first()


# Proofs hash O(tree size) leaves; for fixed sizes they never change, so they are cached. A
# poisoned cache entry cannot fake evidence: every consumer verifies the proof against a root.
PROOF_CACHE_SECONDS = 24 * 3600


def _checkpoint_root(size: int) -> str | None:
    root = Checkpoint.objects.filter(tree_size=size).values_list("root_hash", flat=True).first()
    return bytes(root).hex() if root is not None else None


def _cached(key: str, roots: Sequence[str | None], compute: Callable[[], list[bytes]]) -> list[bytes]:
    """Cache only sizes pinned by a checkpoint, keyed by its root: a rebuilt log never hits stale proofs."""
    if any(root is None for root in roots):
        return compute()
    key = f"{key}:{':'.join(str(r) for r in roots)}"
    try:
        hit = cache.get(key)
    except Exception:  # the cache (Redis) does not answer: a miss, the proof is computed from the log
        log.warning("proof cache unavailable", exc_info=True, extra={"event": "evidence.cache_unavailable"})
        return compute()
    if isinstance(hit, list) and all(isinstance(h, bytes) for h in hit):
        return hit
    proof = compute()
    try:
        cache.set(key, proof, PROOF_CACHE_SECONDS)
    except Exception:
        log.warning("proof cache unavailable", exc_info=True, extra={"event": "evidence.cache_unavailable"})
    return proof


def inclusion_proof(*, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``tree_size`` leaves."""
    size = log_size()
    if not 0 < tree_size <= size:
        raise ProofRequestError(f"tree_size must be between 1 and the log size {size}")
    if not 0 <= index < tree_size:
        raise ProofRequestError(f"index must be between 0 and tree_size - 1 ({tree_size - 1})")
    return _cached(
        f"evidence:inclusion:{index}:{tree_size}",
        [_checkpoint_root(tree_size)],
        lambda: merkle.inclusion_proof(leaf_source(tree_size), index, tree_size),
    )


def consistency_proof(*, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof that the tree of ``first`` leaves is a prefix of ``second``."""
    size = log_size()
    if not 0 < second <= size:
        raise ProofRequestError(f"second must be between 1 and the log size {size}")
    if not 0 < first <= second:
        raise ProofRequestError("first must be between 1 and second")
    return _cached(
        f"evidence:consistency:{first}:{second}",
        [_checkpoint_root(first), _checkpoint_root(second)],
        lambda: merkle.consistency_proof(leaf_source(second), first, second),
    )


def note_verifiers(origin: str, ring: KeyRing) -> list[NoteVerifier]:
    return [NoteVerifier.for_key(origin, key) for key in ring.as_dict().values()]


# ---------------------------------------------------------------- the mission page


@dataclass(frozen=True)
class AttestationRow:
    """One attestation on the mission page with the result of re-checking it now."""

    attestation: Attestation
    kind_label: str
    subject: str
    verified: bool
    detail: str

    @property
    def log_index(self) -> int:
        return self.attestation.log_index


def mission_attestation_queryset(mission_id: int) -> QuerySet[Attestation]:
    return Attestation.objects.filter(mission_id=mission_id).order_by("log_index")


def attestations_verify(attestations: Sequence[Attestation], *, ring: KeyRing, origin: str) -> list[AttestationRow]:
    """Verify each envelope's signature and its inclusion in the latest (signature-checked) checkpoint.

    The leaf is recomputed from the stored envelope, so an envelope edited in the database
    fails here even though its log row is untouched.
    """
    keys = ring.as_dict()
    checkpoint = checkpoint_latest()
    tree = None
    problem = "no checkpoint yet"
    if checkpoint is not None:
        try:
            tree = checkpoint_open(checkpoint.note, note_verifiers(origin, ring))
            problem = ""
        except EvidenceError as exc:
            problem = f"latest checkpoint does not verify: {exc}"
    rows = []
    for attestation in attestations:
        kind_label = AttestationKind(attestation.kind).label if attestation.kind in AttestationKind.values else ""
        try:
            statement = dsse.envelope_statement(attestation.envelope)
            subject = str(statement["subject"][0]["name"])
        except (EvidenceError, KeyError, IndexError, TypeError):
            subject = ""
        try:
            dsse.dsse_verify(attestation.envelope, keys)
        except EvidenceError as exc:
            rows.append(AttestationRow(attestation, kind_label, subject, False, f"signature: {exc}"))
            continue
        if tree is None:
            rows.append(AttestationRow(attestation, kind_label, subject, False, f"signature ok; {problem}"))
            continue
        if attestation.log_index >= tree.size:
            rows.append(
                AttestationRow(
                    attestation,
                    kind_label,
                    subject,
                    False,
                    f"signature ok; not yet in a checkpoint (log size {tree.size})",
                )
            )
            continue
        try:
            proof = inclusion_proof(index=attestation.log_index, tree_size=tree.size)
            merkle.verify_inclusion(
                attestation.log_index, tree.size, envelope_leaf_hash(attestation.envelope), proof, tree.root_hash
            )
        except (EvidenceError, ValueError) as exc:
            rows.append(AttestationRow(attestation, kind_label, subject, False, f"inclusion: {exc}"))
            continue
        rows.append(
            AttestationRow(
                attestation, kind_label, subject, True, f"signature and inclusion at size {tree.size} verify"
            )
        )
    return rows


def mission_attestations(mission_id: int) -> list[AttestationRow]:
    """The mission's attestations (its own, its snapshots' and its incidents'), each re-verified now."""

    return attestations_verify(
        list(mission_attestation_queryset(mission_id)), ring=evidence_keyring(), origin=log_origin()
    )
