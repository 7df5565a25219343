"""DSSE envelopes and in-toto Statement v1 for the console's attestations.

Envelope (secure-systems-lab/dsse envelope.md): ``{"payload": b64, "payloadType": ...,
"signatures": [{"keyid": ..., "sig": b64}]}``, each signature an Ed25519 signature over
PAE(payloadType, payload). Payloads are in-toto Statements (``application/vnd.in-toto+json``)
with predicate types under ``https://tms-console.example/attestations/<kind>/v1``.

The subject of a statement names what is attested and carries the SHA-256 of its canonical
record (``canonical_json``): a mission event, an incident review, a breach verdict; for a
telemetry snapshot the digest is over the exact JSON-lines bytes of its events.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from missions.evidence.keys import Signer
from missions.evidence.verify_core import (
    DSSE_PAYLOAD_TYPE,
    PREDICATE_PREFIX,
    SNAPSHOT_MEDIA_TYPE,
    SNAPSHOT_PREDICATE_TYPE,
    STATEMENT_TYPE,
    EnvelopeError,
    ParsedEnvelope,
    canonical_json,
    ed25519_verify,
    envelope_parse,
    pae,
    statement_digest,
    statement_parse,
)

__all__ = [
    "DSSE_PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "EnvelopeError",
    "ParsedEnvelope",
    "StatementKind",
    "Subject",
    "autonomy_mode_change_statement",
    "canonical_json",
    "carrier_conformance_statement",
    "dsse_sign",
    "dsse_verify",
    "envelope_parse",
    "envelope_statement",
    "incident_review_statement",
    "mission_assignment_statement",
    "mission_outcome_statement",
    "pae",
    "predicate_type",
    "sla_breach_verdict_statement",
    "snapshot_encode",
    "statement_build",
    "statement_digest",
    "statement_parse",
    "statement_sign",
    "telemetry_backfill_statement",
    "telemetry_snapshot_statement",
]


class StatementKind(StrEnum):
    """What a statement attests; each kind has its own predicate type URI."""

    MISSION_ASSIGNMENT = "mission-assignment"
    AUTONOMY_MODE_CHANGE = "autonomy-mode-change"
    MISSION_OUTCOME = "mission-outcome"  # completion or failure
    TELEMETRY_SNAPSHOT = "telemetry-snapshot"
    INCIDENT_REVIEW = "incident-review"
    SLA_BREACH_VERDICT = "sla-breach-verdict"
    TELEMETRY_BACKFILL = "telemetry-backfill"  # a lost-comms gap filled by a store-and-forward upload
    CARRIER_CONFORMANCE = "carrier-conformance"  # a carrier's certification run against the carrier API contract


def predicate_type(kind: StatementKind) -> str:
    return f"{PREDICATE_PREFIX}{kind.value}/v1"


assert predicate_type(StatementKind.TELEMETRY_SNAPSHOT) == SNAPSHOT_PREDICATE_TYPE


@dataclass(frozen=True)
class Subject:
    """An in-toto ResourceDescriptor with a name and a SHA-256 digest."""

    name: str
    sha256: str

    @classmethod
    def for_record(cls, name: str, record: Mapping[str, Any]) -> Subject:
        return cls(name, hashlib.sha256(canonical_json(record)).hexdigest())

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {"sha256": self.sha256}}


def dsse_verify(
    envelope: Any,
    keys: Mapping[str, bytes],
    *,
    threshold: int = 1,
    payload_types: Iterable[str] = (DSSE_PAYLOAD_TYPE,),
) -> tuple[ParsedEnvelope, set[str]]:
    """Verify a (threshold, n) DSSE envelope against named raw Ed25519 keys (DSSE protocol.md).

    KEYID only narrows which keys are tried (it is unauthenticated). Returns the parsed envelope
    and the set of key names whose signature verified; raises EnvelopeError otherwise.
    """
    parsed = envelope_parse(envelope)
    message = pae(parsed.payload_type, parsed.payload)
    accepted: set[str] = set()
    for keyid, sig in parsed.signatures:
        candidates = [keyid] if keyid is not None and keyid in keys else list(keys)
        for name in candidates:
            if ed25519_verify(keys[name], sig, message):
                accepted.add(name)
                break
    if len(accepted) < threshold:
        raise EnvelopeError(f"{len(accepted)} valid signature(s) by trusted keys, {threshold} required")
    if parsed.payload_type not in set(payload_types):
        raise EnvelopeError(f"unsupported payloadType {parsed.payload_type!r}")
    return parsed, accepted


def statement_build(
    *, kind: StatementKind, subjects: Sequence[Subject], predicate: Mapping[str, Any]
) -> dict[str, Any]:
    if not subjects:
        raise ValueError("a statement needs at least one subject")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [s.as_dict() for s in subjects],
        "predicateType": predicate_type(kind),
        "predicate": dict(predicate),
    }


def dsse_sign(*, payload: bytes, signers: Sequence[Signer], payload_type: str = DSSE_PAYLOAD_TYPE) -> dict[str, Any]:
    """A DSSE envelope signed by every signer (keyid = our key id)."""
    if not signers:
        raise ValueError("at least one signer is needed")
    message = pae(payload_type, payload)
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": s.key_id, "sig": base64.b64encode(s.sign(message)).decode("ascii")} for s in signers],
    }


def statement_sign(statement: Mapping[str, Any], signers: Sequence[Signer]) -> dict[str, Any]:
    statement_parse(canonical_json(statement))  # refuse to sign something verifiers would reject
    return dsse_sign(payload=canonical_json(statement), signers=signers)


def envelope_statement(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The statement inside an envelope, WITHOUT checking signatures (display only)."""
    return statement_parse(envelope_parse(envelope).payload)


# ---------------------------------------------------------------- the console's statement kinds


def _record_statement(
    kind: StatementKind,
    subject_name: str,
    record: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    carrier_signature: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    predicate: dict[str, Any] = {"record": dict(record)}
    if extra:
        predicate.update(extra)
    if carrier_signature:
        # The carrier's own signature over its message (e.g. Standard Webhooks headers and the body
        # hash), kept beside ours so a dispute can show what the carrier itself sent.
        predicate["carrierSignature"] = dict(carrier_signature)
    return statement_build(kind=kind, subjects=[Subject.for_record(subject_name, record)], predicate=predicate)


def mission_assignment_statement(
    *, mission_ref: str, record: Mapping[str, Any], carrier_signature: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Mission start: carrier, vehicle, shipment, tender, route, times, correlation id in ``record``."""
    return _record_statement(
        StatementKind.MISSION_ASSIGNMENT, f"urn:tms-console:mission:{mission_ref}", record, None, carrier_signature
    )


def autonomy_mode_change_statement(
    *,
    mission_ref: str,
    from_mode: str,
    to_mode: str,
    record: Mapping[str, Any],
    carrier_signature: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return _record_statement(
        StatementKind.AUTONOMY_MODE_CHANGE,
        f"urn:tms-console:mission:{mission_ref}",
        record,
        {"fromMode": from_mode, "toMode": to_mode},
        carrier_signature,
    )


def mission_outcome_statement(
    *,
    mission_ref: str,
    outcome: Literal["completed", "failed"],
    record: Mapping[str, Any],
    carrier_signature: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    if outcome not in ("completed", "failed"):
        raise ValueError("outcome is 'completed' or 'failed'")
    return _record_statement(
        StatementKind.MISSION_OUTCOME,
        f"urn:tms-console:mission:{mission_ref}",
        record,
        {"outcome": outcome},
        carrier_signature,
    )


def telemetry_backfill_statement(
    *, mission_ref: str, record: Mapping[str, Any], carrier_signature: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A lost-comms gap filled afterwards: the silence, its threshold and the digest of the samples that fill it."""
    return _record_statement(
        StatementKind.TELEMETRY_BACKFILL, f"urn:tms-console:mission:{mission_ref}", record, None, carrier_signature
    )


def incident_review_statement(*, incident_ref: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return _record_statement(StatementKind.INCIDENT_REVIEW, f"urn:tms-console:incident:{incident_ref}", record)


def sla_breach_verdict_statement(*, breach_ref: str, verdict: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return _record_statement(
        StatementKind.SLA_BREACH_VERDICT, f"urn:tms-console:sla-breach:{breach_ref}", record, {"verdict": verdict}
    )


def carrier_conformance_statement(*, run_ref: str, result: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A certification run: the carrier, the contract version, every check and its result in ``record``."""
    return _record_statement(
        StatementKind.CARRIER_CONFORMANCE, f"urn:tms-console:certification:{run_ref}", record, {"result": result}
    )


def snapshot_encode(events: Sequence[Mapping[str, Any]]) -> str:
    """Frozen telemetry events as JSON lines (one canonical JSON object per line, newline-terminated).

    The snapshot digest is over these exact bytes, so no verifier has to re-canonicalise JSON.
    """
    return "".join(canonical_json(event).decode("utf-8") + "\n" for event in events)


def telemetry_snapshot_statement(
    *, snapshot_name: str, mission_ref: str, events_jsonl: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Attest a frozen telemetry snapshot: subject digest = SHA-256 of its JSON-lines bytes."""
    lines = events_jsonl.splitlines()
    for line in lines:
        json.loads(line)  # raises on a line that is not JSON: never attest garbage
    predicate: dict[str, Any] = {
        "mission": f"urn:tms-console:mission:{mission_ref}",
        "mediaType": SNAPSHOT_MEDIA_TYPE,
        "eventCount": len(lines),
    }
    if extra:
        predicate.update(extra)
    digest = hashlib.sha256(events_jsonl.encode("utf-8")).hexdigest()
    return statement_build(
        kind=StatementKind.TELEMETRY_SNAPSHOT, subjects=[Subject(snapshot_name, digest)], predicate=predicate
    )
