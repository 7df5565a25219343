"""A backfill that fills a lost-comms gap: the gap is marked backfilled, the SLI recomputed, the evidence signed.

The story, on a clock that stands still (time-machine): a truck reports at 1 Hz, goes
silent for ten minutes (the gap detector raises lost comms), comes back live, and then
uploads what it buffered through the silence.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.apps import apps
from rest_framework.test import APIClient

from missions.choices import MissionStatus
from missions.evidence import dsse
from missions.models import AuditEvent, Carrier, Mission, TelemetrySample
from missions.models.evidence import Attestation
from missions.models.telemetry import TelemetryGap
from missions.telemetry.gaps import BACKFILLED_ACTION, coverage_line, telemetry_gaps_check
from missions.telemetry.ingest import ingest_events
from sla.choices import SLIName
from sla.models import SLIMeasurement
from sla.services import sla_evaluate
from tests.factories import ContractFactory, MissionFactory
from tests.partner.conftest import api_client, fetch_token, issue_client
from tests.telemetry.conftest import make_event
from tests.telemetry.test_backfill import answer_of, backfill, ndjson

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
SILENCE_START = T0 + timedelta(seconds=59)  # the last event before the silence
SILENCE_END = T0 + timedelta(seconds=660)  # the first event after it


def events(mission: Mission, first: int, last: int) -> list[dict[str, Any]]:
    """One event a second, from ``T0 + first`` to ``T0 + last`` seconds inclusive."""
    return [make_event(mission, ts=T0 + timedelta(seconds=n)) for n in range(first, last + 1)]


def live(carrier: Carrier, batch: list[dict[str, Any]]) -> None:
    assert ingest_events(carrier=carrier, events=batch, source="test").accepted == len(batch)


def integrity_1h(carrier: Carrier) -> SLIMeasurement:
    return (
        SLIMeasurement.objects.filter(carrier=carrier, sli=SLIName.TELEMETRY_INTEGRITY, window="1h")
        .order_by("-computed_at", "-id")
        .first()
    )


@pytest.fixture
def mission(carrier_a: Carrier) -> Mission:
    with time_machine.travel(T0, tick=False):
        ContractFactory(carrier=carrier_a, telemetry_gap_seconds=60, effective_from=date(2026, 1, 1))
        return MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE, started_at=T0)


@pytest.fixture
def api(carrier_a: Carrier) -> APIClient:
    return api_client(fetch_token(issue_client(carrier_a))["access_token"])


@pytest.fixture
def resumed_gap(carrier_a: Carrier, mission: Mission) -> TelemetryGap:
    """A minute of telemetry, ten minutes of silence (lost comms raised), then the truck is back."""
    with time_machine.travel(T0, tick=False) as clock:
        live(carrier_a, events(mission, 0, 59))
        clock.move_to(SILENCE_START + timedelta(seconds=61))
        assert telemetry_gaps_check() == 1
        clock.move_to(SILENCE_END)
        live(carrier_a, events(mission, 660, 660))
    gap = TelemetryGap.objects.get(mission=mission)
    assert (gap.state, gap.last_seen_at, gap.resumed_seen_at) == ("resumed", SILENCE_START, SILENCE_END)
    return gap


def test_a_filled_gap_is_backfilled_its_sli_recomputed_and_the_evidence_signed(
    api: APIClient,
    carrier_a: Carrier,
    mission: Mission,
    resumed_gap: TelemetryGap,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with time_machine.travel(SILENCE_END + timedelta(seconds=40), tick=False):
        live(carrier_a, events(mission, 661, 699))
        sla_evaluate(carrier_id=carrier_a.pk)
        before = integrity_1h(carrier_a)
        assert before.good < before.total  # the silence costs buckets
        buffered = events(mission, 60, 659)
        with django_capture_on_commit_callbacks(execute=True):
            answer = answer_of(backfill(api, ndjson(*buffered)))
    assert (answer["accepted"], answer["refused"]) == (600, 0)
    assert answer["gaps_backfilled"] == [
        {
            "gap_id": resumed_gap.pk,
            "mission_id": mission.pk,
            "silence_start": "2026-11-26T10:00:59Z",
            "silence_end": "2026-11-26T10:11:00Z",
            "gap_seconds": 60,
        }
    ]
    resumed_gap.refresh_from_db()
    assert resumed_gap.state == "backfilled"
    assert resumed_gap.backfilled_at == SILENCE_END + timedelta(seconds=40)

    # The domain event, with the digest of the samples that fill the silence.
    event = AuditEvent.objects.get(action=BACKFILLED_ACTION)
    assert (event.mission_id, event.carrier_id, event.actor_label) == (mission.pk, carrier_a.pk, "carrier:carrier-a")
    assert event.data["gap_id"] == resumed_gap.pk and event.data["samples"] == 600
    assert event.data["longest_silence_seconds"] == 1.0
    inside = TelemetrySample.objects.filter(
        mission=mission, recorded_at__gt=SILENCE_START, recorded_at__lt=SILENCE_END
    ).order_by("recorded_at")
    expected = hashlib.sha256(b"".join(coverage_line(s.event_id, s.recorded_at, s.lat, s.lon) for s in inside))
    assert event.data["samples_sha256"] == expected.hexdigest()

    # The SLA engine measured again: the 1 h window now holds a sample in every bucket.
    after = integrity_1h(carrier_a)
    assert after.pk > before.pk  # a new measurement (the clock stands still here)
    assert after.good == after.total > before.good and after.value == Decimal("100.0000")
    recomputed = AuditEvent.objects.get(action="sla.telemetry_recomputed")
    assert recomputed.data["cause_event_id"] == event.pk
    assert recomputed.before["1h"]["good"] == before.good
    assert recomputed.after["1h"]["good"] == after.good
    assert recomputed.data["silence_window"]["value"] == "100.0000"

    # The evidence log: one signed statement about the mission, its record the event above.
    attestation = Attestation.objects.get(kind="telemetry-backfill")
    assert (attestation.subject_type, attestation.subject_id, attestation.mission_id) == (
        "mission",
        mission.pk,
        mission.pk,
    )
    assert attestation.source_event_id == event.pk
    statement = dsse.envelope_statement(attestation.envelope)
    assert statement["predicateType"] == "https://tms-console.example/attestations/telemetry-backfill/v1"
    record = statement["predicate"]["record"]
    assert record["event"] == event.pk and record["data"]["samples_sha256"] == event.data["samples_sha256"]
    assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(dsse.canonical_json(record)).hexdigest()


def test_a_partial_backfill_leaves_the_gap_resumed_until_the_rest_arrives(
    api: APIClient, carrier_a: Carrier, mission: Mission, resumed_gap: TelemetryGap
) -> None:
    buffered = events(mission, 60, 659)
    with time_machine.travel(SILENCE_END + timedelta(seconds=5), tick=False):
        # 100 s to 400 s: a hole of 41 s before and one of 260 s after are left (threshold 60 s).
        first = answer_of(backfill(api, ndjson(*buffered[40:341])))
        assert first["gaps_backfilled"] == []
        resumed_gap.refresh_from_db()
        assert resumed_gap.state == "resumed"
        # All of it, the first part again: stored once, and the gap is filled.
        rest = answer_of(backfill(api, ndjson(*buffered)))
        assert (rest["accepted"], rest["duplicates"]) == (299, 301)
        assert [g["gap_id"] for g in rest["gaps_backfilled"]] == [resumed_gap.pk]
        # Sent a third time: nothing new, and the gap is not marked again.
        third = answer_of(backfill(api, ndjson(*buffered)))
        assert (third["accepted"], third["duplicates"], third["gaps_backfilled"]) == (0, 600, [])
    assert AuditEvent.objects.filter(action=BACKFILLED_ACTION).count() == 1


def test_a_hole_as_long_as_the_threshold_is_not_filled(
    api: APIClient, carrier_a: Carrier, mission: Mission, resumed_gap: TelemetryGap
) -> None:
    with time_machine.travel(SILENCE_END + timedelta(seconds=5), tick=False):
        # Everything but 300..359: a silence of exactly 60 s (from 299 to 359) is left.
        lines = [*events(mission, 60, 299), *events(mission, 359, 659)]
        answer = answer_of(backfill(api, ndjson(*lines)))
    assert answer["gaps_backfilled"] == []
    resumed_gap.refresh_from_db()
    assert resumed_gap.backfilled_at is None


def test_an_upload_that_reaches_past_an_open_gap_ends_it_and_fills_it(
    api: APIClient, carrier_a: Carrier, mission: Mission
) -> None:
    # The truck's first words after the silence are its buffered telemetry, newest last.
    with time_machine.travel(T0, tick=False) as clock:
        live(carrier_a, events(mission, 0, 59))
        clock.move_to(SILENCE_START + timedelta(seconds=61))
        assert telemetry_gaps_check() == 1
        clock.move_to(T0 + timedelta(seconds=700))
        answer = answer_of(backfill(api, ndjson(*events(mission, 60, 699))))
    gap = TelemetryGap.objects.get(mission=mission)
    assert gap.resumed_seen_at == T0 + timedelta(seconds=699)  # the newest event of the chunk that ended it
    assert gap.state == "backfilled"
    assert [g["gap_id"] for g in answer["gaps_backfilled"]] == [gap.pk]


def test_another_carriers_upload_fills_no_gap(
    carrier_a: Carrier, carrier_b: Carrier, mission: Mission, resumed_gap: TelemetryGap
) -> None:
    api_b = api_client(fetch_token(issue_client(carrier_b))["access_token"])
    with time_machine.travel(SILENCE_END + timedelta(seconds=5), tick=False):
        answer = answer_of(backfill(api_b, ndjson(*events(mission, 60, 659))))
    assert (answer["accepted"], answer["refused"], answer["gaps_backfilled"]) == (0, 600, [])
    resumed_gap.refresh_from_db()
    assert resumed_gap.state == "resumed"


def test_gaps_closed_before_the_migration_get_the_end_of_their_silence_from_the_event_log(
    carrier_a: Carrier, mission: Mission, resumed_gap: TelemetryGap
) -> None:
    migration = __import__("missions.migrations.0012_telemetry_gap_backfill", fromlist=["resumed_seen_at_from_events"])
    TelemetryGap.objects.filter(pk=resumed_gap.pk).update(resumed_seen_at=None)
    migration.resumed_seen_at_from_events(apps, None)
    resumed_gap.refresh_from_db()
    assert resumed_gap.resumed_seen_at == SILENCE_END


def test_the_partner_event_log_carries_the_backfill(
    api: APIClient, carrier_a: Carrier, mission: Mission, resumed_gap: TelemetryGap
) -> None:
    with time_machine.travel(SILENCE_END + timedelta(seconds=5), tick=False):
        answer_of(backfill(api, ndjson(*events(mission, 60, 659))))
        replay = api.get("/api/v1/events?after=0&limit=1000").json()["events"]
    backfilled = [e for e in replay if e["action"] == BACKFILLED_ACTION]
    assert len(backfilled) == 1 and backfilled[0]["subject_id"] == mission.pk
    assert json.loads(json.dumps(backfilled[0]["data"]))["gap_id"] == resumed_gap.pk
