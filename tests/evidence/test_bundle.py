"""Evidence bundles: export, verify, then flip each part and see each failure named precisely."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missions.evidence import dsse
from missions.evidence.bundle import InMemoryLog, Snapshot, bundle_build, bundle_verify
from missions.evidence.keys import Ed25519Signer, KeyRing
from missions.evidence.note import NoteSigner, note_key_hash
from missions.evidence.verify_core import leaf_hash
from tests.evidence.builders import ORIGIN, SNAPSHOT_NAME, SUBJECT, Built, build, dump


@pytest.fixture(scope="module")
def built() -> Built:
    return build()


def errors_of(data: bytes, trusted: KeyRing | None = None) -> list[str]:
    report = bundle_verify(data, trusted)
    assert not report.ok
    return report.errors


def flip_b64(text: str, position: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[position] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_bundle_round_trip_verifies(built: Built) -> None:
    report = bundle_verify(built.bundle)
    assert report.ok, report.summary()
    assert any("no trusted keys given" in w for w in report.warnings)
    assert f"bundle is about {SUBJECT}" in report.checked
    assert "statement 2 is leaf 4 of the log at size 9" in report.checked
    assert any(c.startswith(f"snapshot {SNAPSHOT_NAME!r} (3 events) matches statement 2") for c in report.checked)

    trusted = bundle_verify(built.bundle, KeyRing([built.signer.public_key_bytes]))
    assert trusted.ok, trusted.summary()
    assert trusted.warnings == []
    assert trusted.summary().startswith("OK: evidence bundle verifies")


def test_one_byte_changed_in_a_statement_payload(built: Built) -> None:
    doc = built.doc
    envelope = doc["statements"][1]["envelope"]
    payload = base64.b64decode(envelope["payload"]).replace(b"remote_assist", b"remote_assisT")
    envelope["payload"] = base64.b64encode(payload).decode()
    errors = errors_of(dump(doc))
    assert f"statement 1: DSSE signature does not verify with key {built.signer.key_id}" in errors
    assert "statement 1: inclusion proof for leaf 3 does not match checkpoint root at size 9" in errors


def test_signature_changed(built: Built) -> None:
    doc = built.doc
    signature = doc["statements"][0]["envelope"]["signatures"][0]
    signature["sig"] = flip_b64(signature["sig"], 10)
    assert errors_of(dump(doc)) == [f"statement 0: DSSE signature does not verify with key {built.signer.key_id}"]


def test_snapshot_changed(built: Built) -> None:
    doc = built.doc
    doc["snapshots"][0]["content"] = doc["snapshots"][0]["content"].replace("89.25", "89.26")
    errors = errors_of(dump(doc))
    assert len(errors) == 1
    assert errors[0].startswith(f"snapshot {SNAPSHOT_NAME!r}: snapshot hash mismatch (content sha256 ")
    attested = json.loads(base64.b64decode(doc["statements"][2]["envelope"]["payload"]))["subject"][0]["digest"]
    assert errors[0].endswith(f"statement 2 attests {attested['sha256']})")


def test_snapshot_line_that_is_not_json(built: Built) -> None:
    doc = built.doc
    doc["snapshots"][0]["content"] += "not json\n"
    errors = errors_of(dump(doc))
    assert f"snapshot {SNAPSHOT_NAME!r}: line 4 is not valid JSON" in errors


def test_proof_hash_changed(built: Built) -> None:
    doc = built.doc
    proof = doc["statements"][3]["log"]["inclusion_proof"]
    proof[0] = flip_b64(proof[0], 0)
    assert errors_of(dump(doc)) == ["statement 3: inclusion proof for leaf 6 does not match checkpoint root at size 9"]


def test_checkpoint_root_changed(built: Built) -> None:
    doc = built.doc
    lines = doc["checkpoint"].split("\n")
    lines[2] = base64.b64encode(leaf_hash(b"another tree")).decode()
    doc["checkpoint"] = "\n".join(lines)
    errors = errors_of(dump(doc))
    assert errors[0] == f"checkpoint signature by key {built.signer.key_id} does not verify"
    for position, (index, _) in enumerate(built.envelopes):
        assert f"statement {position}: inclusion proof for leaf {index} does not match checkpoint root at size 9" in (
            errors
        )


def test_checkpoint_size_changed(built: Built) -> None:
    doc = built.doc
    doc["checkpoint"] = doc["checkpoint"].replace(f"{ORIGIN}\n9\n", f"{ORIGIN}\n10\n")
    errors = errors_of(dump(doc))
    assert errors[0] == f"checkpoint signature by key {built.signer.key_id} does not verify"
    assert "statement 0: inclusion proof for leaf 1 is for tree size 9, the checkpoint is at size 10" in errors


def test_wrong_trusted_key(built: Built) -> None:
    stranger = Ed25519Signer.generate()
    report = bundle_verify(built.bundle, KeyRing([stranger.public_key_bytes]))
    assert not report.ok
    key_hash = note_key_hash(ORIGIN, built.signer.public_key_bytes)
    assert report.errors[0] == f"checkpoint signed by unknown key ({ORIGIN}+{key_hash:08x})"
    assert f"statement 0: signed by unknown key {built.signer.key_id}" in report.errors
    assert f"bundle key {built.signer.key_id} is not among the trusted keys: ignored" in report.warnings


def test_statement_signed_by_a_wrong_key_under_our_key_id(built: Built) -> None:
    doc = built.doc
    impostor = Ed25519Signer.generate()
    statement = dsse.envelope_statement(doc["statements"][0]["envelope"])
    forged = dsse.statement_sign(statement, [impostor])
    forged["signatures"][0]["keyid"] = built.signer.key_id
    doc["statements"][0]["envelope"] = forged
    assert errors_of(dump(doc)) == [f"statement 0: DSSE signature does not verify with key {built.signer.key_id}"]


def test_a_bundle_rebuilt_by_someone_else_only_fails_against_trusted_keys(built: Built) -> None:
    forged = build()  # a consistent bundle, but by another key
    assert bundle_verify(forged.bundle).ok
    errors = errors_of(forged.bundle, KeyRing([built.signer.public_key_bytes]))
    assert errors[0].startswith(f"checkpoint signed by unknown key ({ORIGIN}+")


def test_proof_for_another_tree_size(built: Built) -> None:
    doc = built.doc
    index, envelope = built.envelopes[0]
    older = built.log.logged(envelope, index, size=7).as_dict()["log"]
    doc["statements"][0]["log"] = older
    assert errors_of(dump(doc)) == [
        "statement 0: inclusion proof for leaf 1 is for tree size 7, the checkpoint is at size 9"
    ]
    older["tree_size"] = 9  # now it lies about its size
    assert errors_of(dump(doc)) == [
        "statement 0: inclusion proof for leaf 1 is malformed: proof has 3 hashes, leaf 1 in a tree of size 9 needs 4"
    ]


def test_checkpoint_signed_by_an_unknown_key(built: Built) -> None:
    doc = built.doc
    stranger = NoteSigner(ORIGIN, Ed25519Signer.generate())
    body = doc["checkpoint"][: doc["checkpoint"].rfind("\n\n") + 1]
    from missions.evidence.note import note_sign

    doc["checkpoint"] = note_sign(body, [stranger])
    assert errors_of(dump(doc)) == [f"checkpoint signed by unknown key ({ORIGIN}+{stranger.key_hash:08x})"]


@pytest.mark.parametrize("cut", [0, 1, 100, -2])
def test_truncated_file(built: Built, cut: int) -> None:
    data = built.bundle[: cut if cut >= 0 else len(built.bundle) + cut - 1]
    errors = errors_of(data)
    assert len(errors) == 1 and errors[0].startswith("bundle is not valid JSON (truncated?): ")


def test_not_utf8(built: Built) -> None:
    errors = errors_of(b"\xff" + built.bundle)
    assert len(errors) == 1 and errors[0].startswith("bundle is not UTF-8 text")


def test_public_key_with_a_wrong_key_id(built: Built) -> None:
    doc = built.doc
    doc["public_keys"][0]["key_id"] = "0" * 16
    errors = errors_of(dump(doc))
    assert errors[0] == f"public key 0: key_id '{'0' * 16}' does not match the key (computed {built.signer.key_id})"


def test_missing_log_entry_and_leaf_outside_the_tree(built: Built) -> None:
    doc = built.doc
    del doc["statements"][0]["log"]
    doc["statements"][1]["log"]["leaf_index"] = 12
    errors = errors_of(dump(doc))
    assert "statement 0: no log entry (leaf_index, tree_size, inclusion_proof)" in errors
    assert "statement 1: leaf index 12 is outside the checkpoint tree of size 9" in errors


def test_record_that_does_not_match_its_subject_digest(built: Built) -> None:
    doc = built.doc
    statement = dsse.envelope_statement(doc["statements"][0]["envelope"])
    statement["predicate"]["record"]["vehicle"] = "TX-20"  # signed properly, but the digest no longer fits
    envelope = dsse.statement_sign(statement, [built.signer])
    doc["statements"][0]["envelope"] = envelope
    errors = errors_of(dump(doc))
    assert "statement 0: subject digest does not match the attested record" in errors
    assert "statement 0: inclusion proof for leaf 1 does not match checkpoint root at size 9" in errors


def test_snapshot_missing_or_purged(built: Built) -> None:
    doc = built.doc
    doc["snapshots"] = []
    assert errors_of(dump(doc)) == [
        f"snapshot {SNAPSHOT_NAME!r} is attested by statement 2 but is missing from the bundle"
    ]
    doc["snapshots"] = [Snapshot(SNAPSHOT_NAME, None).as_dict()]
    report = bundle_verify(dump(doc))
    assert report.ok, report.summary()
    assert (
        f"snapshot {SNAPSHOT_NAME!r}: events purged under the retention policy; hash attested only" in report.warnings
    )


def test_bundle_subject_must_be_attested(built: Built) -> None:
    doc = built.doc
    doc["subject"] = "urn:tms-console:mission:M-8"
    assert errors_of(dump(doc)) == [
        "bundle subject 'urn:tms-console:mission:M-8' is not the subject of any verified statement"
    ]


def test_rotated_keys_both_verify_from_the_key_ring() -> None:
    old, new = Ed25519Signer.generate(), Ed25519Signer.generate()
    rotated = build(signer=new, statement_signer=old)  # statements from before the rotation, new log key
    ring = KeyRing([old.public_key_bytes, new.public_key_bytes])
    report = bundle_verify(rotated.bundle, ring)
    assert report.ok, report.summary()
    assert errors_of(rotated.bundle, KeyRing([new.public_key_bytes]))[0].startswith(
        "statement 0: signed by unknown key"
    )


def test_in_memory_log_refuses_a_proof_for_the_wrong_envelope(built: Built) -> None:
    log = InMemoryLog(ORIGIN, built.signer)
    envelope = built.envelopes[0][1]
    log.append(envelope)
    with pytest.raises(ValueError):
        log.logged(built.envelopes[1][1], 0)


def test_bundle_build_produces_stable_json(built: Built) -> None:
    again = bundle_build(
        subject=SUBJECT,
        statements=[built.log.logged(e, i) for i, e in built.envelopes],
        checkpoint_note=built.doc["checkpoint"],
        public_keys=[built.signer.public_key_bytes],
        snapshots=[Snapshot(SNAPSHOT_NAME, built.snapshot_jsonl)],
    )
    assert again == built.bundle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_single_bit_flip_is_detected(built: Built, position: int, bit: int) -> None:
    data = bytearray(built.bundle)
    position %= len(data)
    data[position] ^= 1 << bit
    try:
        if json.loads(bytes(data)) == json.loads(built.bundle):
            return  # JSON layout only: nothing the bundle says has changed
    except ValueError:
        pass
    report = bundle_verify(bytes(data))
    assert not report.ok, f"flip at {position} bit {bit} went unnoticed"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_structures_give_a_failed_report_never_an_exception(built: Built, data: st.DataObject) -> None:
    doc = built.doc
    # Replace one node somewhere in the document with an arbitrary JSON value.
    path: list[Any] = []
    node: Any = doc
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    value = data.draw(json_values)
    if not path:
        doc = value
    else:
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    report = bundle_verify(json.dumps(doc).encode())
    if doc != built.doc:
        assert not report.ok, f"changed {path} to {value!r} unnoticed"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert not bundle_verify(data).ok


def test_verify_evidence_command(built: Built, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(built.bundle)
    pub = tmp_path / "log.pub.pem"
    pub.write_bytes(built.signer.public_pem())
    out = io.StringIO()
    call_command("verify_evidence", str(good), "--trusted-keys", str(pub), stdout=out)
    assert out.getvalue().startswith("OK: evidence bundle verifies")
    out = io.StringIO()
    call_command("verify_evidence", str(good), "--bundle-keys", stdout=out)
    assert "no trusted keys given" in out.getvalue()
    bad = tmp_path / "bad.json"
    bad.write_bytes(built.bundle[:-40])
    with pytest.raises(CommandError, match=r"bundle is not valid JSON \(truncated\?\)"):
        call_command("verify_evidence", str(bad), "--trusted-keys", str(pub))
    stranger = tmp_path / "stranger.pub.pem"
    stranger.write_bytes(Ed25519Signer.generate().public_pem())
    with pytest.raises(CommandError, match="checkpoint signed by unknown key"):
        call_command("verify_evidence", str(good), "--trusted-keys", str(stranger))
    with pytest.raises(CommandError):
        call_command("verify_evidence", str(tmp_path / "missing.json"))


def test_renamed_or_extra_fields_are_named(built: Built) -> None:
    doc = built.doc
    signature = doc["statements"][0]["envelope"]["signatures"][0]
    signature["keyie"] = signature.pop("keyid")
    doc["statements"][1]["log"]["note"] = "added"
    doc["comment"] = "added"
    errors = errors_of(dump(doc))
    assert "bundle: unexpected field(s) comment" in errors
    assert "statement 0 signature 0: missing field(s) keyid; unexpected field(s) keyie" in errors
    assert "statement 1 log entry: unexpected field(s) note" in errors
