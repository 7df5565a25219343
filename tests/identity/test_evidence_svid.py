"""The vehicle certificate's fingerprint in the mission's evidence statements and frozen telemetry."""

from __future__ import annotations

import pytest

from missions.evidence.selectors import statement_for
from missions.identity.svid import fingerprint_sha256
from missions.models.evidence import AttestationKind, AttestationSubjectType
from missions.telemetry.ingest import ingest_events
from missions.telemetry.snapshots import telemetry_snapshot_freeze
from tests.identity.conftest import Pki
from tests.partner.test_isolation import telemetry_event

pytestmark = pytest.mark.django_db


def test_mission_statements_and_snapshots_carry_the_vehicle_certificate(pki: Pki) -> None:
    svid = pki.svid()
    fingerprint = fingerprint_sha256(svid.certificate)
    result = ingest_events(
        carrier=pki.carrier_a, events=[telemetry_event(pki.mission)], source="webhook", vehicle_cert=fingerprint
    )
    assert result.accepted == 1

    built = statement_for(
        kind=AttestationKind.AUTONOMY_MODE_CHANGE,
        subject_type=AttestationSubjectType.MISSION,
        subject_id=pki.mission.pk,
        event=None,
    )
    assert built is not None
    statement, _ = built
    assert statement["predicate"]["record"]["vehicleCertificates"] == [fingerprint]

    snapshot = telemetry_snapshot_freeze(mission_id=pki.mission.pk, reason="test")
    assert [event["vehicle_cert"] for event in snapshot.events] == [fingerprint]
    snapshot_statement, _ = statement_for(
        kind=AttestationKind.TELEMETRY_SNAPSHOT,
        subject_type=AttestationSubjectType.SNAPSHOT,
        subject_id=snapshot.pk,
        event=None,
    ) or (None, None)
    assert snapshot_statement is not None and snapshot_statement["predicate"]["eventCount"] == 1


def test_statements_of_missions_without_svids_are_unchanged(pki: Pki) -> None:
    ingest_events(carrier=pki.carrier_a, events=[telemetry_event(pki.mission)], source="webhook")
    built = statement_for(
        kind=AttestationKind.AUTONOMY_MODE_CHANGE,
        subject_type=AttestationSubjectType.MISSION,
        subject_id=pki.mission.pk,
        event=None,
    )
    assert built is not None and "vehicleCertificates" not in built[0]["predicate"]["record"]
