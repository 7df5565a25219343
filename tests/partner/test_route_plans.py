"""Signed route plans over the partner API: the good path and every refusal, each with its own problem type.

Keys are generated here; plans are signed like ``cosign sign-blob --key``
(missions.simulators.plan_signing).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import AuditEvent, Carrier, Mission, RoutePlan
from missions.routeplans import services as plan_services
from missions.routeplans.metrics import ROUTE_PLAN_SUBMISSIONS
from missions.simulators.plan_signing import KeyPair, blob_sign, key_pair_generate, plan_bytes, submission
from tests.partner.conftest import api_client, assert_problem, fetch_token

WAYPOINTS = [[32.7767, -96.797], [31.5493, -97.1467], [30.2672, -97.7431]]


@pytest.fixture
def key_a(carrier_a: Carrier) -> KeyPair:
    pair = key_pair_generate()
    plan_services.signing_key_register(
        carrier_id=carrier_a.pk, name="plans-a", public_key=pair.public_pem, actor=Actor.system("test")
    )
    return pair


@pytest.fixture
def key_b(carrier_b: Carrier) -> KeyPair:
    pair = key_pair_generate()
    plan_services.signing_key_register(
        carrier_id=carrier_b.pk, name="plans-b", public_key=pair.public_pem, actor=Actor.system("test")
    )
    return pair


def plan_for(mission: Mission, version: int = 1, **overrides: Any) -> bytes:
    now = timezone.now()
    fields: dict[str, Any] = {
        "mission_id": mission.pk,
        "version": version,
        "valid_from": now - timedelta(minutes=5),
        "valid_until": now + timedelta(hours=12),
        "waypoints": WAYPOINTS,
    }
    fields.update(overrides)
    return plan_bytes(**fields)


def path_of(mission: Mission) -> str:
    return f"/api/v1/missions/{mission.pk}/route-plans"


def refusals(reason: str) -> float:
    return ROUTE_PLAN_SUBMISSIONS.labels(outcome=reason)._value.get()


@pytest.mark.django_db
def test_a_signed_plan_verifies_and_becomes_the_missions_plan(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    artifact = plan_for(mission_a)
    before = refusals("verified")
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_a.private_pem, artifact)))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] == 1 and body["mission_id"] == mission_a.pk
    assert body["digest"] == f"sha256:{hashlib.sha256(artifact).hexdigest()}"
    assert body["size"] == len(artifact) and body["waypoints"] == WAYPOINTS
    plan = RoutePlan.objects.get(mission=mission_a)
    assert bytes(plan.artifact) == artifact and plan.signing_key.carrier_id == mission_a.carrier_id
    verified = AuditEvent.objects.get(action="route_plan.verified", mission=mission_a)
    assert verified.after["sha256"] == plan.sha256 and verified.after["version"] == 1
    assert refusals("verified") == before + 1
    listed = api_a.get(path_of(mission_a))
    assert listed.status_code == 200 and [p["version"] for p in listed.json()] == [1]


@pytest.mark.django_db
def test_a_newer_version_replaces_the_plan_and_an_older_or_equal_one_is_a_rollback(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    v1 = plan_for(mission_a, 1)
    v2 = plan_for(mission_a, 2, waypoints=WAYPOINTS[:2])
    assert post_json(api_a, path_of(mission_a), submission(v1, blob_sign(key_a.private_pem, v1))).status_code == 201
    assert post_json(api_a, path_of(mission_a), submission(v2, blob_sign(key_a.private_pem, v2))).status_code == 201
    before = refusals("route-plan-rollback")
    for replay in (v1, v2):  # the older plan replayed, and the current one again: both signed and valid
        response = post_json(api_a, path_of(mission_a), submission(replay, blob_sign(key_a.private_pem, replay)))
        body = assert_problem(response, 409, "/route-plan-rollback")
        assert "not newer than the verified version 2" in body["detail"]
    assert refusals("route-plan-rollback") == before + 2
    assert list(RoutePlan.objects.filter(mission=mission_a).values_list("version", flat=True)) == [2, 1]


def _assert_nothing_stored(mission: Mission, reason: str) -> None:
    assert not RoutePlan.objects.filter(mission=mission).exists()
    refused = AuditEvent.objects.filter(action="route_plan.refused", mission=mission).order_by("-id").first()
    assert refused is not None and refused.data["reason"] == reason


@pytest.mark.django_db
def test_a_signature_over_other_bytes_is_refused(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    signed = plan_for(mission_a)
    sent = plan_for(mission_a, waypoints=[[0.0, 0.0], [1.0, 1.0]])
    before = refusals("route-plan-signature-invalid")
    response = post_json(api_a, path_of(mission_a), submission(sent, blob_sign(key_a.private_pem, signed)))
    assert_problem(response, 422, "/route-plan-signature-invalid")
    _assert_nothing_stored(mission_a, "route-plan-signature-invalid")
    assert refusals("route-plan-signature-invalid") == before + 1


@pytest.mark.django_db
def test_a_valid_signature_by_another_carriers_key_is_refused(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, key_b: KeyPair, post_json: Callable[..., Any]
) -> None:
    artifact = plan_for(mission_a)
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_b.private_pem, artifact)))
    body = assert_problem(response, 422, "/route-plan-key-of-other-carrier")
    assert "carrier-b" not in json.dumps(body)  # the other carrier is not named to the caller
    _assert_nothing_stored(mission_a, "route-plan-key-of-other-carrier")


@pytest.mark.django_db
def test_a_carrier_without_a_key_is_told_so(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    other = key_pair_generate()
    artifact = plan_for(mission_a)
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(other.private_pem, artifact)))
    assert_problem(response, 422, "/route-plan-no-signing-key")
    _assert_nothing_stored(mission_a, "route-plan-no-signing-key")


@pytest.mark.django_db
def test_a_retired_key_verifies_nothing_new(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    key = mission_a.carrier.signing_keys.get()
    plan_services.signing_key_retire(key_pk=key.pk, actor=Actor.system("test"))
    artifact = plan_for(mission_a)
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_a.private_pem, artifact)))
    assert_problem(response, 422, "/route-plan-key-retired")
    _assert_nothing_stored(mission_a, "route-plan-key-retired")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda body, artifact: {**body, "size": len(artifact) + 1}, "route-plan-length-mismatch"),
        (lambda body, artifact: {**body, "size": len(artifact) - 1}, "route-plan-length-mismatch"),
        (
            lambda body, artifact: {**body, "digest": "sha256:" + hashlib.sha256(artifact + b" ").hexdigest()},
            "route-plan-digest-mismatch",
        ),
    ],
)
def test_the_declared_length_and_digest_are_checked_first(
    api_a: APIClient,
    mission_a: Mission,
    key_a: KeyPair,
    post_json: Callable[..., Any],
    tamper: Callable[[dict[str, Any], bytes], dict[str, Any]],
    reason: str,
) -> None:
    artifact = plan_for(mission_a)
    body = tamper(submission(artifact, blob_sign(key_a.private_pem, artifact)), artifact)
    assert_problem(post_json(api_a, path_of(mission_a), body), 422, f"/{reason}")
    _assert_nothing_stored(mission_a, reason)


@pytest.mark.django_db
def test_an_unsigned_body_is_refused_before_it_is_read(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    # Not JSON at all, but the signature is checked first: the answer is about the signature, not the syntax.
    artifact = b"{not json"
    other = key_pair_generate()
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(other.private_pem, artifact)))
    assert_problem(response, 422, "/route-plan-signature-invalid")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "artifact",
    [
        b"{not json",
        b'{"version": 1, "version": 2}',
        b'{"type": "tms.route_plan.v1", "version": NaN}',
        b"\xff\xfe{}",
        b"[" * 100_000,
    ],
    ids=["syntax", "duplicate-member", "nan", "not-utf8", "deep-nesting"],
)
def test_malformed_json_after_a_valid_signature_is_refused(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any], artifact: bytes
) -> None:
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_a.private_pem, artifact)))
    assert_problem(response, 422, "/route-plan-malformed")
    _assert_nothing_stored(mission_a, "route-plan-malformed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"waypoints": [[32.0, -96.0]]}, "/waypoints"),
        ({"waypoints": [[91.0, -96.0], [30.0, -97.0]]}, "/waypoints/0/0"),
        ({"waypoints": [[32.0, -181.0], [30.0, -97.0]]}, "/waypoints/0/1"),
        ({"waypoints": [[32.0, -96.0], [30.0, True]]}, "/waypoints/1/1"),
        ({"waypoints": [[32.0, -96.0], [30.0, -97.0, 5.0]]}, "/waypoints/1"),
        ({"version": "2"}, "/version"),
        ({"version": 2.0}, "/version"),
        ({"version": 0}, "/version"),
        ({"valid_from": "2026-12-06 10:00:00"}, "/valid_from"),
        ({"valid_until": "2026-12-06T10:00:00"}, "/valid_until"),
        ({"type": "something.else"}, "/type"),
        ({"route": "I-35"}, "/route"),
        ({"mission_id": "7"}, "/mission_id"),
    ],
)
def test_a_plan_breaking_the_schema_is_refused_with_a_pointer(
    api_a: APIClient,
    mission_a: Mission,
    key_a: KeyPair,
    post_json: Callable[..., Any],
    overrides: dict[str, Any],
    pointer: str,
) -> None:
    artifact = plan_for(mission_a, **overrides)
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_a.private_pem, artifact)))
    body = assert_problem(response, 422, "/route-plan-invalid")
    assert pointer in [e["pointer"] for e in body["errors"]], body
    _assert_nothing_stored(mission_a, "route-plan-invalid")


@pytest.mark.django_db
def test_a_plan_for_another_mission_is_refused(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    artifact = plan_for(mission_a, mission_id=mission_a.pk + 1000)
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_a.private_pem, artifact)))
    body = assert_problem(response, 422, "/route-plan-mission-mismatch")
    assert body["errors"][0]["pointer"] == "/mission_id"
    _assert_nothing_stored(mission_a, "route-plan-mission-mismatch")


@pytest.mark.django_db
def test_an_expired_and_a_not_yet_valid_plan_are_refused(
    api_a: APIClient, partner_a: Any, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    now = timezone.now()
    expired = plan_for(mission_a, valid_from=now - timedelta(hours=3), valid_until=now - timedelta(seconds=1))
    response = post_json(api_a, path_of(mission_a), submission(expired, blob_sign(key_a.private_pem, expired)))
    assert_problem(response, 422, "/route-plan-expired")
    _assert_nothing_stored(mission_a, "route-plan-expired")
    early = plan_for(mission_a, valid_from=now + timedelta(hours=1), valid_until=now + timedelta(hours=3))
    response = post_json(api_a, path_of(mission_a), submission(early, blob_sign(key_a.private_pem, early)))
    assert_problem(response, 422, "/route-plan-not-yet-valid")
    _assert_nothing_stored(mission_a, "route-plan-not-yet-valid")
    # The same signed bytes, sent once their window has opened, verify.
    with time_machine.travel(now + timedelta(hours=2)):
        later = api_client(fetch_token(partner_a)["access_token"])
        response = post_json(later, path_of(mission_a), submission(early, blob_sign(key_a.private_pem, early)))
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_another_carriers_mission_is_not_found_and_a_closed_one_takes_no_plan(
    api_b: APIClient, api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    artifact = plan_for(mission_a)
    body = submission(artifact, blob_sign(key_a.private_pem, artifact))
    assert_problem(post_json(api_b, path_of(mission_a), body), 404, "/not-found")
    assert_problem(api_b.get(path_of(mission_a)), 404, "/not-found")
    Mission.objects.filter(pk=mission_a.pk).update(status=MissionStatus.COMPLETED)
    assert_problem(post_json(api_a, path_of(mission_a), body), 409, "/route-plan-mission-closed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"digest": "sha1:abc"},
        {"digest": "sha256:" + "A" * 64},
        {"size": "12"},
        {"size": -1},
        {"artifact": "not base64!"},
        {"signature": 5},
        {"artifact": None},
    ],
)
def test_an_envelope_the_schema_forbids_is_400(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any], change: dict[str, Any]
) -> None:
    artifact = plan_for(mission_a)
    body = {**submission(artifact, blob_sign(key_a.private_pem, artifact)), **change}
    assert_problem(post_json(api_a, path_of(mission_a), body), 400, "/validation-error")
    assert not AuditEvent.objects.filter(action__startswith="route_plan.").exists()


@pytest.mark.django_db
def test_a_retry_with_the_same_key_replays_the_refusal_without_a_second_record(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    artifact = plan_for(mission_a)
    body = submission(artifact, base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode())
    first = post_json(api_a, path_of(mission_a), body, key="plan-1")
    second = post_json(api_a, path_of(mission_a), body, key="plan-1")
    assert_problem(first, 422, "/route-plan-signature-invalid")
    assert second.content == first.content and second["Idempotent-Replayed"] == "true"
    assert AuditEvent.objects.filter(action="route_plan.refused", mission=mission_a).count() == 1


@pytest.mark.django_db
def test_the_write_needs_the_missions_write_scope(
    partner_a: Any, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    reader = api_client(fetch_token(partner_a, scope="missions:read")["access_token"])
    artifact = plan_for(mission_a)
    body = submission(artifact, blob_sign(key_a.private_pem, artifact))
    assert_problem(post_json(reader, path_of(mission_a), body), 403, "/insufficient-scope")
    assert reader.get(path_of(mission_a)).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "head",
    ['"type": "\\u0000"', '"\\u0000x": 1', '"\\ud800": 1', '"type": "x", "valid_from": "\\ud800"'],
    ids=["nul-value", "nul-member", "surrogate-member", "surrogate-instant"],
)
def test_a_signed_plan_holding_an_unstorable_string_is_refused_not_a_server_error(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any], head: str
) -> None:
    # The signature verifies: the strings no column can store are in the signed bytes themselves.
    now = timezone.now()
    valid = f'"valid_until": "{(now + timedelta(hours=1)).isoformat()}", "waypoints": []'
    if "valid_from" not in head:
        valid = f'"valid_from": "{(now - timedelta(minutes=5)).isoformat()}", {valid}'
    artifact = f'{{{head}, "mission_id": {mission_a.pk}, "version": 1, {valid}}}'.encode()
    response = post_json(api_a, path_of(mission_a), submission(artifact, blob_sign(key_a.private_pem, artifact)))
    problem = assert_problem(response, 422)
    assert [e["code"] for e in problem["errors"]] == ["unstorable_string"]
    assert b"\x00" not in response.content
    assert not RoutePlan.objects.filter(mission=mission_a).exists()
