"""The route plan parser and the signature check on untrusted bytes: only ``PlanRefused``, never another error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from missions.routeplans.artifact import (
    PlanRefused,
    Reason,
    Submission,
    integrity_check,
    plan_parse,
    public_key_load,
    signature_decode,
    signature_verifies,
)
from missions.simulators.plan_signing import blob_sign, key_pair_generate, plan_bytes, submission

PAIR = key_pair_generate()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_to_a_plan_or_a_refusal(data: bytes) -> None:
    try:
        plan_parse(data)
    except PlanRefused as refusal:
        assert refusal.reason in (Reason.MALFORMED, Reason.INVALID)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "mission_id", "version", "valid_from", "valid_until", "waypoints", "x"]), JSON_VALUES
    )
)
def test_any_json_object_is_a_plan_or_an_invalid_one_with_pointers(document: dict[str, object]) -> None:
    try:
        plan_parse(json.dumps(document).encode())
    except PlanRefused as refusal:
        assert refusal.reason == Reason.INVALID and refusal.errors
        assert all(e["pointer"].startswith("/") or e["pointer"] == "" for e in refusal.errors)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_any_signature_text_verifies_nothing_it_was_not_made_for(text: str) -> None:
    key = public_key_load(PAIR.public_pem)
    assert not signature_verifies(key, signature_decode(text), b"plan")


def test_a_good_plan_round_trips_and_a_one_byte_change_breaks_the_signature() -> None:
    now = datetime(2026, 12, 6, 8, tzinfo=UTC)
    artifact = plan_bytes(
        mission_id=7, version=2, valid_from=now, valid_until=now + timedelta(hours=1), waypoints=[[1, 2], [3, 4]]
    )
    body = submission(artifact, blob_sign(PAIR.private_pem, artifact))
    sub = Submission.of(
        artifact=artifact,
        signature_text=body["signature"],
        declared_sha256=body["digest"].removeprefix("sha256:"),
        declared_size=body["size"],
    )
    integrity_check(sub)
    key = public_key_load(PAIR.public_pem)
    assert signature_verifies(key, sub.signature, artifact)
    assert not signature_verifies(key, sub.signature, artifact[:-1] + b" ")
    plan = plan_parse(artifact)
    assert (plan.mission_id, plan.version, plan.waypoints) == (7, 2, [[1.0, 2.0], [3.0, 4.0]])
    assert plan.valid_from == now
