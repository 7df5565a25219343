"""The verified route plan's digest in the mission's evidence statements, and the bundle still verifies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from missions import services as mission_services
from missions.choices import MissionStatus
from missions.events import Actor
from missions.evidence import dsse, selectors, services
from missions.evidence.bundle import bundle_verify
from missions.evidence.keys import Ed25519Signer
from missions.evidence.signing import evidence_signer_reset
from missions.models.evidence import AttestationKind
from missions.routeplans import services as plan_services
from missions.routeplans.artifact import Submission
from missions.simulators.plan_signing import blob_sign, key_pair_generate, plan_bytes
from tests.evidence.test_persistence import attest, key_in_environment
from tests.factories import MissionFactory

ACTOR = Actor.system("test")


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ed25519Signer]:
    monkeypatch.delenv("EVIDENCE_PUBLIC_KEYS", raising=False)
    yield key_in_environment(monkeypatch)
    evidence_signer_reset()


@pytest.mark.django_db
def test_the_outcome_statement_carries_the_verified_plans_digest() -> None:
    mission = MissionFactory()
    pair = key_pair_generate()
    key = plan_services.signing_key_register(
        carrier_id=mission.carrier_id, name="plans", public_key=pair.public_pem, actor=ACTOR
    )
    now = timezone.now()
    artifact = plan_bytes(
        mission_id=mission.pk,
        version=3,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(hours=4),
        waypoints=[[32.7, -96.8], [30.3, -97.7]],
    )
    outcome = plan_services.route_plan_submit(
        mission_id=mission.pk,
        carrier=mission.carrier,
        submission=Submission.of(
            artifact=artifact,
            signature_text=blob_sign(pair.private_pem, artifact),
            declared_sha256=hashlib.sha256(artifact).hexdigest(),
            declared_size=len(artifact),
        ),
        actor=Actor.for_carrier(mission.carrier),
    )
    assert outcome.plan is not None, outcome.refusal
    for status in (MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.COMPLETED):
        mission_services.mission_transition(mission_id=mission.pk, to_status=status, actor=ACTOR)
    event = selectors.source_event_latest(
        kind=AttestationKind.MISSION_OUTCOME, subject_type="mission", subject_id=mission.pk
    )
    assert event is not None
    attestation = attest(AttestationKind.MISSION_OUTCOME, "mission", mission.pk, event.pk)
    record = dsse.envelope_statement(attestation.envelope)["predicate"]["record"]
    assert record["routePlan"] == {
        "version": 3,
        "digest": {"sha256": hashlib.sha256(artifact).hexdigest()},
        "size": len(artifact),
        "keyId": key.key_id,
        "validFrom": selectors.plain(outcome.plan.valid_from),
        "validUntil": selectors.plain(outcome.plan.valid_until),
    }
    report = bundle_verify(services.evidence_bundle_for_mission(mission.pk))
    assert report.ok, report.errors


@pytest.mark.django_db
def test_a_mission_without_a_plan_has_no_plan_in_its_record() -> None:
    mission = MissionFactory()
    record = dsse.envelope_statement(attest(AttestationKind.MISSION_ASSIGNMENT, "mission", mission.pk).envelope)
    assert "routePlan" not in record["predicate"]["record"]
