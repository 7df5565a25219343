"""The database-backed evidence log: attestations, sequential leaves, consistent checkpoints, guards."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from missions import services as mission_services
from missions.choices import AutonomyMode, MissionStatus
from missions.events import Actor
from missions.evidence import merkle, selectors, services
from missions.evidence.bundle import bundle_verify, envelope_leaf_hash
from missions.evidence.checkpoint import checkpoint_open
from missions.evidence.keys import Ed25519Signer, KeyRing
from missions.evidence.note import NoteVerifier
from missions.evidence.signing import evidence_keyring, evidence_signer, evidence_signer_reset
from missions.models import Mission, TelemetrySample
from missions.models.evidence import (
    Attestation,
    AttestationKind,
    Checkpoint,
    TransparencyLogEntry,
    TransparencyLogHead,
)
from missions.models.telemetry import TelemetrySnapshot, TelemetryWindowEvent
from missions.telemetry.retention import telemetry_purge, telemetry_window_prune
from tests.conftest import require_service
from tests.factories import MissionFactory

ORIGIN = "tms-console.example/evidence"
ACTOR = Actor.system("test")
EVENTS = [
    {"at": "2026-11-26T05:00:00Z", "lat": 32.7767, "lon": -96.797, "speed_kph": 88.5},
    {"at": "2026-11-26T05:00:01Z", "lat": 32.7771, "lon": -96.7962, "speed_kph": 89.0},
]


def key_in_environment(monkeypatch: pytest.MonkeyPatch) -> Ed25519Signer:
    """A fresh signing key, given the way production gives it: the environment (base64 seed)."""
    seed = os.urandom(32)
    monkeypatch.setenv("EVIDENCE_SIGNING_KEY", base64.b64encode(seed).decode())
    monkeypatch.delenv("EVIDENCE_SIGNING_KEY_FILE", raising=False)
    evidence_signer_reset()
    return Ed25519Signer.from_seed(seed)


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ed25519Signer]:
    monkeypatch.delenv("EVIDENCE_PUBLIC_KEYS", raising=False)
    yield key_in_environment(monkeypatch)
    evidence_signer_reset()


def attest(kind: str, subject_type: str, subject_id: int, event_id: int | None = None) -> Attestation:
    attestation = services.attestation_for_event(
        kind=kind, subject_type=subject_type, subject_id=subject_id, event_id=event_id
    )
    assert attestation is not None
    return attestation


def snapshot_freeze(mission: Mission, events: list[dict[str, Any]] = EVENTS) -> TelemetrySnapshot:
    now = timezone.now()
    return TelemetrySnapshot.objects.create(
        mission=mission,
        reason="test",
        window_start=now - timedelta(minutes=5),
        window_end=now,
        events=events,
        event_count=len(events),
        sha256="0" * 64,
    )


def mission_with_evidence(**mission_fields: Any) -> Mission:
    """A mission assigned, switched to supervised, with a frozen snapshot, then completed; all attested."""
    mission = MissionFactory(**mission_fields)
    attest(AttestationKind.MISSION_ASSIGNMENT, "mission", mission.pk)
    mission_services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.EN_ROUTE, actor=ACTOR)
    mission_services.mission_autonomy_change(mission_id=mission.pk, mode=AutonomyMode.MANUAL, actor=ACTOR)
    event = selectors.source_event_latest(
        kind=AttestationKind.AUTONOMY_MODE_CHANGE, subject_type="mission", subject_id=mission.pk
    )
    assert event is not None
    attest(AttestationKind.AUTONOMY_MODE_CHANGE, "mission", mission.pk, event.pk)
    snapshot = snapshot_freeze(mission)
    attest(AttestationKind.TELEMETRY_SNAPSHOT, "snapshot", snapshot.pk)
    mission_services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.ARRIVING, actor=ACTOR)
    mission_services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.COMPLETED, actor=ACTOR)
    event = selectors.source_event_latest(
        kind=AttestationKind.MISSION_OUTCOME, subject_type="mission", subject_id=mission.pk
    )
    assert event is not None
    attest(AttestationKind.MISSION_OUTCOME, "mission", mission.pk, event.pk)
    return mission


def noise(n: int) -> None:
    """Attestations about other missions, so proofs cross real subtrees."""
    for _ in range(n):
        attest(AttestationKind.MISSION_ASSIGNMENT, "mission", MissionFactory().pk)


def raw_sql_allowing_writes() -> None:
    """Let raw SQL change an evidence table inside this test's transaction (simulating an attacker)."""
    if connection.vendor == "postgresql":
        # Only a superuser can do this; LOCAL ends with the test's transaction.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")


# ---------------------------------------------------------------- the log


@pytest.mark.django_db
def test_leaves_are_sequential_and_checkpoints_stay_consistent(signing_key: Ed25519Signer) -> None:
    verifier = NoteVerifier.for_key(ORIGIN, signing_key.public_key_bytes)
    issued: list[Checkpoint] = []
    for batch in (3, 1, 4, 5):
        noise(batch)
        checkpoint = services.checkpoint_issue()
        assert checkpoint is not None
        issued.append(checkpoint)
    # No growth, no new checkpoint.
    assert services.checkpoint_issue() == issued[-1]
    assert [c.tree_size for c in issued] == [3, 4, 8, 13]

    entries = list(TransparencyLogEntry.objects.order_by("index"))
    assert [e.index for e in entries] == list(range(13))
    assert [a.log_index for a in Attestation.objects.order_by("log_index")] == list(range(13))
    leaves = [bytes(e.leaf_hash) for e in entries]
    assert leaves == [envelope_leaf_hash(e.attestation.envelope) for e in entries]
    head = TransparencyLogHead.objects.get(pk=1)
    assert head.tree_size == 13

    for checkpoint in issued:
        body = checkpoint_open(checkpoint.note, [verifier])
        assert (body.origin, body.size) == (ORIGIN, checkpoint.tree_size)
        assert body.root_hash == bytes(checkpoint.root_hash) == merkle.tree_root(leaves, checkpoint.tree_size)
    for older in issued:
        for newer in issued:
            if older.tree_size < newer.tree_size:
                proof = selectors.consistency_proof(first=older.tree_size, second=newer.tree_size)
                merkle.verify_consistency(
                    older.tree_size, newer.tree_size, proof, bytes(older.root_hash), bytes(newer.root_hash)
                )
    for index in range(13):
        proof = selectors.inclusion_proof(index=index, tree_size=13)
        merkle.verify_inclusion(index, 13, leaves[index], proof, bytes(issued[-1].root_hash))


@pytest.mark.django_db
def test_a_rewritten_log_gets_no_new_checkpoint(caplog: pytest.LogCaptureFixture) -> None:
    noise(5)
    first = services.checkpoint_issue()
    assert first is not None
    raw_sql_allowing_writes()
    with connection.cursor() as cursor:
        cursor.execute('UPDATE missions_transparencylogentry SET leaf_hash = %s WHERE "index" = 2', [bytes(32)])
    noise(1)
    with caplog.at_level(logging.CRITICAL), pytest.raises(services.EvidenceLogInconsistent):
        services.checkpoint_issue()
    assert "inconsistent with its previous checkpoint" in caplog.text
    assert list(Checkpoint.objects.values_list("tree_size", flat=True)) == [5]


@pytest.mark.django_db
def test_an_attestation_is_made_once_per_causing_event() -> None:
    mission = MissionFactory()
    mission_services.mission_autonomy_change(mission_id=mission.pk, mode=AutonomyMode.MANUAL, actor=ACTOR)
    event = selectors.source_event_latest(kind="autonomy-mode-change", subject_type="mission", subject_id=mission.pk)
    assert event is not None
    first = attest(AttestationKind.AUTONOMY_MODE_CHANGE, "mission", mission.pk, event.pk)
    again = attest(AttestationKind.AUTONOMY_MODE_CHANGE, "mission", mission.pk, event.pk)
    assert again.pk == first.pk
    assert TransparencyLogHead.objects.get(pk=1).tree_size == 1
    # A later change is a new event, so a new attestation and a new leaf.
    mission_services.mission_autonomy_change(mission_id=mission.pk, mode=AutonomyMode.AUTONOMOUS, actor=ACTOR)
    later = selectors.source_event_latest(kind="autonomy-mode-change", subject_type="mission", subject_id=mission.pk)
    assert later is not None and later.pk != event.pk
    second = attest(AttestationKind.AUTONOMY_MODE_CHANGE, "mission", mission.pk, later.pk)
    assert (first.log_index, second.log_index) == (0, 1)
    statement = json.loads(base64.b64decode(second.envelope["payload"]))
    assert statement["predicate"]["fromMode"] == "manual"
    assert statement["predicate"]["toMode"] == "autonomous"
    assert statement["predicate"]["record"]["event"] == later.pk


@pytest.mark.django_db
def test_the_evidence_subscriber_attests_the_causing_event_with_the_carrier_signature(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The core publishes mission.status_changed; evidence's subscriber attests it after commit."""
    mission = MissionFactory()
    material = {"scheme": "standard-webhooks-v1", "webhook-id": "msg_1", "webhook-signature": "v1,abc="}
    capture = django_capture_on_commit_callbacks(execute=True)
    with capture, services.carrier_signed(material), transaction.atomic():
        mission_services.mission_transition(
            mission_id=mission.pk, to_status=MissionStatus.FAILED, actor=ACTOR, reason="brakes"
        )
        assert not Attestation.objects.exists()  # nothing before the commit
    attestation = Attestation.objects.get()
    event = selectors.source_event_latest(kind="mission-outcome", subject_type="mission", subject_id=mission.pk)
    assert event is not None and attestation.source_event_id == event.pk
    assert attestation.mission_id == mission.pk
    assert attestation.carrier_signature == material
    statement = json.loads(base64.b64decode(attestation.envelope["payload"]))
    assert statement["predicate"]["outcome"] == "failed"
    assert statement["predicate"]["carrierSignature"] == material
    assert statement["subject"][0]["name"] == f"urn:tms-console:mission:{mission.pk}"


@pytest.mark.django_db
def test_a_cancellation_is_not_an_outcome_to_attest() -> None:
    mission = MissionFactory()
    mission_services.mission_transition(
        mission_id=mission.pk, to_status=MissionStatus.CANCELLED, actor=ACTOR, reason="customer"
    )
    event = selectors.source_event_latest(kind="mission-outcome", subject_type="mission", subject_id=mission.pk)
    assert event is not None
    assert (
        services.attestation_for_event(
            kind="mission-outcome", subject_type="mission", subject_id=mission.pk, event_id=event.pk
        )
        is None
    )
    assert not Attestation.objects.exists()


# ---------------------------------------------------------------- append-only


@pytest.mark.django_db
def test_the_orm_refuses_to_change_evidence_rows() -> None:
    noise(2)
    assert services.checkpoint_issue() is not None
    for model in (Attestation, TransparencyLogEntry, Checkpoint):
        row = model.objects.first()
        assert row is not None
        with pytest.raises(PermissionError):
            row.save()
        with pytest.raises(PermissionError):
            row.delete()
        with pytest.raises(PermissionError):
            model.objects.all().delete()
        with pytest.raises(PermissionError):
            model.objects.update(created_at=timezone.now())


@pytest.mark.django_db
def test_postgresql_refuses_update_and_delete_on_the_log_table() -> None:
    require_service("PostgreSQL", connection.vendor == "postgresql")
    noise(3)
    assert services.checkpoint_issue() is not None
    statements = [
        ('UPDATE missions_transparencylogentry SET leaf_hash = %s WHERE "index" = 1', [bytes(32)]),
        ('DELETE FROM missions_transparencylogentry WHERE "index" = 2', []),
        ("UPDATE missions_checkpoint SET note = 'forged'", []),
        ("DELETE FROM missions_checkpoint", []),
        ("UPDATE missions_attestation SET key_id = 'x'", []),
        ("DELETE FROM missions_attestation", []),
    ]
    for sql, params in statements:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    assert TransparencyLogEntry.objects.count() == 3
    assert len({bytes(h) for h in TransparencyLogEntry.objects.values_list("leaf_hash", flat=True)}) == 3


# ---------------------------------------------------------------- bundles, retention, the mission page


@pytest.mark.django_db
def test_purging_raw_telemetry_never_breaks_a_proof(signing_key: Ed25519Signer) -> None:
    mission = mission_with_evidence()
    noise(2)
    now = timezone.now()
    old = now - timedelta(days=400)
    TelemetrySample.objects.create(mission=mission, vehicle=mission.vehicle, recorded_at=old, lat=1.0, lon=2.0)
    TelemetryWindowEvent.objects.create(
        event_id="6a1f8a63-8e0b-4d51-9b3b-6c2b1f0f2a11",
        mission=mission,
        recorded_at=old,
        received_at=old,
        payload=EVENTS[0],
    )
    ring = KeyRing([signing_key.public_key_bytes])
    before = services.evidence_bundle_for_mission(mission.pk)
    assert bundle_verify(before, ring).ok

    # Retention purges the samples and the window the snapshot was frozen from.
    assert telemetry_purge(days=30)["purged"] == 1
    assert telemetry_window_prune(now=now) == 1
    report = bundle_verify(services.evidence_bundle_for_mission(mission.pk), ring)
    assert report.ok, report.summary()
    assert not report.warnings

    # Later the snapshot's own events are purged: only their attested hash remains, still proven.
    TelemetrySnapshot.objects.filter(mission=mission).update(events=[])
    bundle = services.evidence_bundle_for_mission(mission.pk)
    report = bundle_verify(bundle, ring)
    assert report.ok, report.summary()
    assert any("purged under the retention policy" in w for w in report.warnings)
    doc = json.loads(bundle)
    assert doc["snapshots"][0]["purged"] is True
    assert [s["log"]["leaf_index"] for s in doc["statements"]] == [0, 1, 2, 3]


@pytest.mark.django_db
def test_altered_snapshot_events_fail_verification_instead_of_passing_as_purged(signing_key: Ed25519Signer) -> None:
    mission = mission_with_evidence()
    TelemetrySnapshot.objects.filter(mission=mission).update(events=[{**EVENTS[0], "speed_kph": 55.0}, EVENTS[1]])
    report = bundle_verify(services.evidence_bundle_for_mission(mission.pk), KeyRing([signing_key.public_key_bytes]))
    assert not report.ok
    assert any("snapshot hash mismatch" in e for e in report.errors)


@pytest.mark.django_db
def test_mission_attestations_are_reverified_from_the_stored_envelopes() -> None:
    mission = mission_with_evidence()
    noise(1)
    services.checkpoint_issue()
    rows = selectors.mission_attestations(mission.pk)
    assert [r.log_index for r in rows] == [0, 1, 2, 3]
    assert all(r.verified for r in rows), [r.detail for r in rows]
    assert [r.attestation.kind for r in rows] == [
        "mission-assignment",
        "autonomy-mode-change",
        "telemetry-snapshot",
        "mission-outcome",
    ]

    # An envelope edited behind the application's back no longer verifies.
    tampered = dict(rows[1].attestation.envelope)
    statement = json.loads(base64.b64decode(tampered["payload"]))
    statement["predicate"]["toMode"] = "autonomous"
    tampered["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    raw_sql_allowing_writes()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE missions_attestation SET envelope = %s WHERE id = %s",
            [json.dumps(tampered), rows[1].attestation.pk],
        )
    rows = selectors.mission_attestations(mission.pk)
    assert [r.verified for r in rows] == [True, False, True, True]
    assert rows[1].detail.startswith("signature:")

    # A new attestation is listed but not verified until a checkpoint covers it.
    attest(AttestationKind.MISSION_ASSIGNMENT, "mission", mission.pk, event_id=999_999)
    last = selectors.mission_attestations(mission.pk)[-1]
    assert not last.verified and "not yet in a checkpoint" in last.detail


@pytest.mark.django_db
def test_statements_signed_before_a_rotation_still_verify(
    monkeypatch: pytest.MonkeyPatch, signing_key: Ed25519Signer
) -> None:
    mission = MissionFactory()
    attest(AttestationKind.MISSION_ASSIGNMENT, "mission", mission.pk)
    assert services.checkpoint_issue() is not None
    new_key = key_in_environment(monkeypatch)
    # The old public key stays published.
    monkeypatch.setenv("EVIDENCE_PUBLIC_KEYS", base64.b64encode(signing_key.public_key_bytes).decode())
    evidence_signer_reset()
    mission_services.mission_transition(
        mission_id=mission.pk, to_status=MissionStatus.FAILED, actor=ACTOR, reason="flat tyre"
    )
    event = selectors.source_event_latest(kind="mission-outcome", subject_type="mission", subject_id=mission.pk)
    assert event is not None
    outcome = attest(AttestationKind.MISSION_OUTCOME, "mission", mission.pk, event.pk)
    assert outcome.key_id == new_key.key_id
    ring = evidence_keyring()
    assert {signing_key.key_id, new_key.key_id} <= set(ring)
    bundle = services.evidence_bundle_for_mission(mission.pk)
    report = bundle_verify(bundle, ring)
    assert report.ok, report.summary()
    assert {k["key_id"] for k in json.loads(bundle)["public_keys"]} == {signing_key.key_id, new_key.key_id}
    # Without the old key published, the first statement is no longer trusted.
    assert not bundle_verify(bundle, KeyRing([new_key.public_key_bytes])).ok


# ---------------------------------------------------------------- keys


@pytest.mark.django_db
def test_production_without_a_key_skips_attestations_and_warns(
    monkeypatch: pytest.MonkeyPatch, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("EVIDENCE_SIGNING_KEY")
    settings.DEBUG = False
    settings.TESTING = False
    settings.EVIDENCE_SIGNING_KEY_FILE = ""
    evidence_signer_reset()
    mission = MissionFactory()
    with caplog.at_level(logging.ERROR):
        assert (
            services.attestation_for_event(
                kind="mission-assignment", subject_type="mission", subject_id=mission.pk, event_id=None
            )
            is None
        )
    assert "attestation skipped" in caplog.text
    assert not Attestation.objects.exists()
    assert "evidence.W001" in [m.id for m in run_checks()]


@pytest.mark.django_db
def test_debug_without_a_key_uses_one_development_key(
    monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
) -> None:
    monkeypatch.delenv("EVIDENCE_SIGNING_KEY")
    settings.EVIDENCE_SIGNING_KEY_FILE = ""
    settings.VAR_DIR = tmp_path
    evidence_signer_reset()
    first = evidence_signer()
    evidence_signer_reset()
    second = evidence_signer()
    assert first is not None and second is not None and first.key_id == second.key_id
    key_file = tmp_path / "keys" / "evidence-dev.key.pem"
    assert key_file.stat().st_mode & 0o077 == 0  # readable by the owner only
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["evidence-dev.key.pem"]
    assert "evidence.W001" not in [m.id for m in run_checks()]


# ---------------------------------------------------------------- incidents and breaches


@pytest.mark.django_db
def test_incident_reviews_join_the_mission_bundle_and_breach_verdicts_get_their_own(
    signing_key: Ed25519Signer, sla_manager: Any
) -> None:
    from decimal import Decimal

    from sla.models import Breach
    from tests.conftest import verified_client
    from tests.factories import ContractFactory, IncidentFactory

    mission = mission_with_evidence()
    unreviewed = IncidentFactory(mission=mission, carrier=mission.carrier, status="resolved")
    assert (
        services.attestation_for_event(
            kind="incident-review", subject_type="incident", subject_id=unreviewed.pk, event_id=None
        )
        is None
    )
    incident = IncidentFactory(
        mission=mission,
        carrier=mission.carrier,
        status="closed",
        review="Lost comms for 90 s in a tunnel; the truck held its lane.",
    )
    review = attest(AttestationKind.INCIDENT_REVIEW, "incident", incident.pk)
    assert review.mission_id == mission.pk
    ring = KeyRing([signing_key.public_key_bytes])
    doc = json.loads(services.evidence_bundle_for_mission(mission.pk))
    names = [json.loads(base64.b64decode(s["envelope"]["payload"]))["subject"][0]["name"] for s in doc["statements"]]
    assert names[-1] == f"urn:tms-console:incident:{incident.pk}"

    contract = ContractFactory(carrier=mission.carrier)
    today = timezone.now().date()
    breach = Breach.objects.create(
        carrier=mission.carrier,
        contract=contract,
        sli="on_time",
        period_start=today.replace(day=1),
        period_end=today.replace(day=1) + timedelta(days=31),
        measured=Decimal("91.5"),
        target=Decimal("95"),
        unit="%",
        attainment_pct=Decimal("91.5"),
        evidence={"missions": [mission.pk]},
        status="confirmed",
        decided_by=sla_manager,
        decided_at=timezone.now(),
        reason="",
    )
    verdict = attest(AttestationKind.SLA_BREACH_VERDICT, "breach", breach.pk)
    statement = json.loads(base64.b64decode(verdict.envelope["payload"]))
    assert statement["predicate"]["verdict"] == "confirmed"
    assert statement["predicate"]["record"]["measured"] == "91.5000"
    response = verified_client(sla_manager).get(f"/evidence/breaches/{breach.pk}/bundle/")
    assert response.status_code == 200
    report = bundle_verify(response.content, ring)
    assert report.ok, report.summary()
    assert f"bundle is about urn:tms-console:sla-breach:{breach.pk}" in report.checked


# ---------------------------------------------------------------- tasks and concurrency


@pytest.mark.django_db
def test_the_beat_task_checkpoints_only_when_the_log_grew(settings: Any) -> None:
    from missions.evidence import tasks

    assert settings.CELERY_BEAT_SCHEDULE["evidence-checkpoint"]["task"] == "missions.evidence.checkpoint"
    assert tasks.checkpoint() is None  # empty log
    noise(2)
    assert tasks.checkpoint() == 2
    assert tasks.checkpoint() == 2
    assert Checkpoint.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_appenders_get_distinct_sequential_indexes() -> None:
    require_service("PostgreSQL", connection.vendor == "postgresql")
    import threading

    from django.db import connections

    missions = [MissionFactory().pk for _ in range(16)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(ids: list[int]) -> None:
        try:
            barrier.wait()
            for mission_id in ids:
                attest(AttestationKind.MISSION_ASSIGNMENT, "mission", mission_id)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(missions[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(TransparencyLogEntry.objects.values_list("index", flat=True)) == list(range(16))
    checkpoint = services.checkpoint_issue()
    assert checkpoint is not None and checkpoint.tree_size == 16
    leaves = [bytes(h) for h in TransparencyLogEntry.objects.order_by("index").values_list("leaf_hash", flat=True)]
    assert merkle.tree_root(leaves) == bytes(checkpoint.root_hash)
