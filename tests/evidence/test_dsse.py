"""DSSE envelopes (secure-systems-lab/dsse vectors) and the console's in-toto statements."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from missions.evidence import dsse
from missions.evidence.dsse import EnvelopeError, StatementKind
from missions.evidence.keys import Ed25519Signer
from tests.evidence import vectors_dsse as v

KEYS = {name: bytes.fromhex(k["public"]) for name, k in v.KEYS.items()}


def test_vector_keys_derive_from_their_seeds() -> None:
    for name, key in v.KEYS.items():
        assert Ed25519Signer.from_seed(bytes.fromhex(key["seed"])).public_key_bytes == KEYS[name]


@pytest.mark.parametrize("case", v.VECTORS, ids=[c["id"] for c in v.VECTORS])
def test_dsse_vectors(case: dict[str, Any]) -> None:
    parsed = dsse.envelope_parse(case["envelope"])
    if case["id"] != "payload-type-swapped":
        assert dsse.pae(parsed.payload_type, parsed.payload).hex() == case["pae"]
    trusted = {name: KEYS[name] for name in case["trustedKeys"]}
    call = lambda: dsse.dsse_verify(  # noqa: E731
        case["envelope"], trusted, threshold=case["threshold"], payload_types=case["supportedPayloadTypes"]
    )
    if case["expect"] == "accept":
        _, accepted = call()
        assert len(accepted) >= case["threshold"]
    else:
        with pytest.raises(EnvelopeError):
            call()


def test_sign_with_a_vector_key_reproduces_the_vector_signature() -> None:
    signer = Ed25519Signer.from_seed(bytes.fromhex(v.KEYS["A"]["seed"]))
    case = v.VECTORS[0]
    payload = base64.b64decode(case["envelope"]["payload"])
    envelope = dsse.dsse_sign(payload=payload, signers=[signer])
    assert envelope["signatures"][0]["sig"] == case["envelope"]["signatures"][0]["sig"]
    assert envelope["signatures"][0]["keyid"] == signer.key_id


def test_round_trip_and_tamper() -> None:
    signer = Ed25519Signer.generate()
    statement = dsse.mission_assignment_statement(mission_ref="42", record={"mission": 42, "carrier": "acme"})
    envelope = dsse.statement_sign(statement, [signer])
    parsed, accepted = dsse.dsse_verify(envelope, {signer.key_id: signer.public_key_bytes})
    assert accepted == {signer.key_id}
    assert json.loads(parsed.payload) == statement
    assert dsse.envelope_statement(envelope) == statement

    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[10] ^= 1
    tampered = {**envelope, "payload": base64.b64encode(bytes(payload)).decode()}
    with pytest.raises(EnvelopeError, match="0 valid signature"):
        dsse.dsse_verify(tampered, {signer.key_id: signer.public_key_bytes})
    other = Ed25519Signer.generate()
    with pytest.raises(EnvelopeError):
        dsse.dsse_verify(envelope, {other.key_id: other.public_key_bytes})
    retyped = {**envelope, "payloadType": "application/json"}
    with pytest.raises(EnvelopeError):
        dsse.dsse_verify(retyped, {signer.key_id: signer.public_key_bytes}, payload_types=["application/json"])


def test_malformed_envelopes_are_rejected() -> None:
    for bad in (
        None,
        [],
        {"payloadType": "x"},
        {"payload": "!!", "payloadType": "x", "signatures": []},
        {"payload": "", "payloadType": "x", "signatures": [{"sig": "%%"}]},
    ):
        with pytest.raises(EnvelopeError):
            dsse.envelope_parse(bad)


def _one_subject_digest(statement: dict[str, Any]) -> str:
    return str(statement["subject"][0]["digest"]["sha256"])


def test_statement_kinds_have_product_predicate_types_and_record_digests() -> None:
    record = {"mission": 7, "at": "2026-11-26T05:00:00Z", "speed_kph": 88.5}
    statements = {
        StatementKind.MISSION_ASSIGNMENT: dsse.mission_assignment_statement(mission_ref="7", record=record),
        StatementKind.AUTONOMY_MODE_CHANGE: dsse.autonomy_mode_change_statement(
            mission_ref="7", from_mode="autonomous", to_mode="remote_assist", record=record
        ),
        StatementKind.MISSION_OUTCOME: dsse.mission_outcome_statement(mission_ref="7", outcome="failed", record=record),
        StatementKind.INCIDENT_REVIEW: dsse.incident_review_statement(incident_ref="INC-3", record=record),
        StatementKind.SLA_BREACH_VERDICT: dsse.sla_breach_verdict_statement(
            breach_ref="B-1", verdict="upheld", record=record
        ),
    }
    expected_digest = hashlib.sha256(dsse.canonical_json(record)).hexdigest()
    for kind, statement in statements.items():
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == f"https://tms-console.example/attestations/{kind.value}/v1"
        assert _one_subject_digest(statement) == expected_digest
        assert statement["predicate"]["record"] == record
        dsse.statement_parse(dsse.canonical_json(statement))
    assert statements[StatementKind.MISSION_OUTCOME]["predicate"]["outcome"] == "failed"
    with pytest.raises(ValueError):
        dsse.mission_outcome_statement(mission_ref="7", outcome="maybe", record=record)  # type: ignore[arg-type]


def test_carrier_signature_is_kept_alongside() -> None:
    carrier_sig = {"scheme": "standard-webhooks", "webhook-id": "msg_1", "webhook-signature": "v1,abc"}
    statement = dsse.mission_assignment_statement(mission_ref="7", record={"a": 1}, carrier_signature=carrier_sig)
    assert statement["predicate"]["carrierSignature"] == carrier_sig


def test_telemetry_snapshot_digest_is_over_the_exact_jsonl_bytes() -> None:
    events = [{"t": "2026-11-26T05:00:00Z", "lat": 32.7767, "lon": -96.797}, {"t": "2026-11-26T05:00:01Z", "é": 1}]
    jsonl = dsse.snapshot_encode(events)
    assert jsonl.count("\n") == 2 and [json.loads(line) for line in jsonl.splitlines()] == events
    statement = dsse.telemetry_snapshot_statement(snapshot_name="snap-1", mission_ref="7", events_jsonl=jsonl)
    assert _one_subject_digest(statement) == hashlib.sha256(jsonl.encode("utf-8")).hexdigest()
    assert statement["predicate"]["eventCount"] == 2
    with pytest.raises(ValueError):
        dsse.telemetry_snapshot_statement(snapshot_name="s", mission_ref="7", events_jsonl="{not json}\n")


def test_statement_parse_rejects_wrong_shapes() -> None:
    good = dsse.incident_review_statement(incident_ref="1", record={"a": 1})
    for mutate in (
        lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"),
        lambda s: s.update(subject=[]),
        lambda s: s.update(subject=[{"name": "x", "digest": {"sha256": "ABC"}}]),
        lambda s: s.pop("predicateType"),
        lambda s: s.update(predicate=[1]),
    ):
        statement = json.loads(json.dumps(good))
        mutate(statement)
        with pytest.raises(EnvelopeError):
            dsse.statement_parse(dsse.canonical_json(statement))
    with pytest.raises(EnvelopeError):
        dsse.statement_parse(b"\xff")
