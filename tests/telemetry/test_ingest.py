"""The ingest path: partial batches, ownership, dedupe, downsampling, the window and its snapshot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from missions.choices import AutonomyMode, ExceptionKind, MissionStatus
from missions.models import AuditEvent, Carrier, Mission, MissionException, TelemetrySample
from missions.models.telemetry import TelemetrySnapshot, TelemetryWindowEvent
from missions.telemetry.ingest import BatchTooLarge, MissionCache, ingest_events
from missions.telemetry.normalize import event_validate
from missions.telemetry.snapshots import canonical_json, snapshot_verify, telemetry_window
from tests.factories import MissionFactory
from tests.telemetry.conftest import make_event, seconds_ago

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["copy", "one-statement"])
def persist_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs through both PostgreSQL write paths (COPY + merge, and the single statement)."""
    from missions.telemetry import storage

    monkeypatch.setattr(storage, "COPY_MIN_EVENTS", 1 if request.param == "copy" else 10_000)
    return str(request.param)


def test_partial_batch_stores_good_events_and_reports_bad_ones_by_index(carrier_a: Carrier, mission: Mission) -> None:
    events: list[Any] = [
        make_event(mission, ts=seconds_ago(3)),
        make_event(mission, ts=seconds_ago(2), position={"lat": 95, "lon": 0}),
        "not an object",
        make_event(mission, ts=seconds_ago(1)),
    ]
    result = ingest_events(carrier=carrier_a, events=events, source="test")
    assert result.accepted == 2
    assert result.duplicates == 0
    assert result.rejected == [
        {"index": 1, "reason": "position.lat: 95 is out of range [-90, 90]"},
        {"index": 2, "reason": "event: expected an object, got a string"},
    ]
    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == 2
    assert TelemetrySample.objects.filter(mission=mission).count() == 2


def test_missions_of_another_carrier_and_wrong_vehicles_are_rejected(
    carrier_a: Carrier, carrier_b: Carrier, mission: Mission
) -> None:
    other = MissionFactory(carrier=carrier_b, status=MissionStatus.EN_ROUTE)
    events = [
        make_event(other),
        make_event(mission, vehicle_id="TRK-NOT-MINE"),
        make_event(mission, mission_id=999_999),
        make_event(mission, correlation_id="0f8fad5b-d9cb-469f-a165-70867728950e"),
    ]
    result = ingest_events(carrier=carrier_a, events=events, source="test")
    assert result.accepted == 0
    assert [r["reason"] for r in result.rejected] == [
        f"mission_id: mission {other.pk} is not a mission of this carrier",
        f"vehicle_id: 'TRK-NOT-MINE' is not the vehicle of mission {mission.pk}",
        "mission_id: mission 999999 is not a mission of this carrier",
        f"correlation_id: does not match mission {mission.pk}",
    ]
    assert not TelemetryWindowEvent.objects.exists()


def test_duplicates_are_counted_not_stored_twice(carrier_a: Carrier, mission: Mission) -> None:
    event = make_event(mission, ts=seconds_ago(1))
    first = ingest_events(carrier=carrier_a, events=[event, dict(event)], source="test")
    assert (first.accepted, first.duplicates) == (1, 1)
    again = ingest_events(carrier=carrier_a, events=[event], source="test")
    assert (again.accepted, again.duplicates) == (0, 1)
    assert TelemetryWindowEvent.objects.count() == 1
    assert TelemetrySample.objects.count() == 1


def test_samples_are_downsampled_to_one_per_vehicle_second_across_batches(carrier_a: Carrier, mission: Mission) -> None:
    base = seconds_ago(30).replace(microsecond=0)
    ten_hz = [make_event(mission, ts=base + timedelta(milliseconds=100 * i)) for i in range(30)]  # 3 s at 10 Hz
    result = ingest_events(carrier=carrier_a, events=ten_hz[:15], source="test")
    result2 = ingest_events(carrier=carrier_a, events=ten_hz[15:], source="test")
    assert result.accepted + result2.accepted == 30
    samples = list(TelemetrySample.objects.filter(mission=mission).order_by("recorded_at"))
    assert [s.recorded_at for s in samples] == [base, base + timedelta(seconds=1), base + timedelta(seconds=2)]
    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == 30  # every event has its dedupe record
    # Full fidelity: the samples and the window rows with a payload give back all 30 events, once each,
    # including those whose second was already taken by the other batch.
    window = telemetry_window(mission_id=mission.pk, start=base - timedelta(seconds=1), end=base + timedelta(seconds=3))
    assert [e["event_id"] for e in window] == [e["event_id"] for e in ten_hz]
    assert TelemetryWindowEvent.objects.filter(mission=mission, payload__isnull=False).count() == 27


def test_window_events_read_back_as_the_normalized_events(carrier_a: Carrier, mission: Mission) -> None:
    base = seconds_ago(20).replace(microsecond=0)
    sent = [
        make_event(mission, ts=base, safety_event=None, health={"fuel_pct": 50.5, "ecu_errors": ["P0300"]}),
        make_event(mission, ts=base + timedelta(milliseconds=500), autonomy_mode="autonomous"),
        make_event(mission, ts=base + timedelta(seconds=1), connectivity={"uplink": "satellite", "latency_ms": 700}),
    ]
    for event in sent:
        event.pop("correlation_id", None)  # filled in from the mission
    assert ingest_events(carrier=carrier_a, events=sent, source="test").accepted == 3
    expected = [event_validate(e, now=timezone.now()) for e in sent]
    window = telemetry_window(mission_id=mission.pk, start=base, end=base + timedelta(seconds=2))
    assert window == [
        {**ev.to_wire(), "correlation_id": str(mission.correlation_id)}  # type: ignore[union-attr]
        for ev in expected
    ]
    # The sampled events are stored once (in the sample); the dedupe record carries no second copy.
    sampled = TelemetryWindowEvent.objects.get(event_id=sent[0]["event_id"])
    assert sampled.payload is None
    assert TelemetryWindowEvent.objects.get(event_id=sent[1]["event_id"]).payload is not None


def test_mission_last_seen_moves_forward_only(carrier_a: Carrier, mission: Mission) -> None:
    newest = make_event(mission, ts=seconds_ago(5), position={"lat": 30.0, "lon": -95.5, "speed_kph": 70.0})
    ingest_events(carrier=carrier_a, events=[newest, make_event(mission, ts=seconds_ago(9))], source="test")
    mission.refresh_from_db()
    assert (mission.last_lat, mission.last_lon, mission.last_speed_kph) == (30.0, -95.5, 70.0)
    seen = mission.last_seen_at
    ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(60))], source="test")  # late event
    mission.refresh_from_db()
    assert mission.last_seen_at == seen and mission.last_lat == 30.0


def test_autonomy_mode_change_goes_to_the_event_log(carrier_a: Carrier, mission: Mission) -> None:
    ingest_events(
        carrier=carrier_a,
        events=[
            make_event(mission, ts=seconds_ago(2)),
            make_event(mission, ts=seconds_ago(1), autonomy_mode="supervised"),
        ],
        source="test",
    )
    mission.refresh_from_db()
    assert mission.autonomy_mode == AutonomyMode.SUPERVISED
    assert mission.human_intervened
    changes = AuditEvent.objects.filter(mission=mission, action="mission.mode_changed")
    assert [(e.before, e.after) for e in changes] == [
        ({"autonomy_mode": "autonomous"}, {"autonomy_mode": "supervised"})
    ]
    # A late, older event reporting the previous mode does not flip it back.
    ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(30))], source="test")
    mission.refresh_from_db()
    assert mission.autonomy_mode == AutonomyMode.SUPERVISED


def test_safety_event_raises_exception_and_freezes_the_last_five_minutes(carrier_a: Carrier, mission: Mission) -> None:
    old = [make_event(mission, ts=seconds_ago(400))]
    recent = [make_event(mission, ts=seconds_ago(200 - i)) for i in range(5)]
    ingest_events(carrier=carrier_a, events=old + recent, source="test")
    stop = make_event(mission, ts=seconds_ago(1), safety_event="emergency_stop", autonomy_mode="safe_hold")
    result = ingest_events(carrier=carrier_a, events=[stop], source="mqtt")
    assert result.accepted == 1

    exc = MissionException.objects.get(mission=mission)
    assert exc.kind == ExceptionKind.EMERGENCY_STOP
    assert exc.data["event_id"] == stop["event_id"] and exc.data["source"] == "mqtt"
    assert AuditEvent.objects.filter(mission=mission, action="mission.exception").count() == 1

    snap = TelemetrySnapshot.objects.get(mission=mission)
    assert snap.reason == "safety_event:emergency_stop" and snap.exception == exc
    assert [e["event_id"] for e in snap.events] == [e["event_id"] for e in recent] + [stop["event_id"]]
    assert snap.event_count == 6
    assert snapshot_verify(snap)
    import hashlib

    assert snap.sha256 == hashlib.sha256(canonical_json(snap.events)).hexdigest()
    snap.events[0]["position"]["lat"] = 0.0
    assert not snapshot_verify(snap)

    # The same safety event resent is a duplicate: no second exception.
    again = ingest_events(carrier=carrier_a, events=[stop], source="test")
    assert again.duplicates == 1
    assert MissionException.objects.filter(mission=mission).count() == 1


def test_oversized_batch_is_refused(carrier_a: Carrier, mission: Mission, settings: Any) -> None:
    settings.API_TELEMETRY_MAX_BATCH = 3
    with pytest.raises(BatchTooLarge):
        ingest_events(carrier=carrier_a, events=[make_event(mission) for _ in range(4)], source="test")


def test_stream_cache_avoids_the_mission_query(carrier_a: Carrier, mission: Mission) -> None:
    cache = MissionCache(ttl_seconds=60)
    ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(3))], source="ws", cache=cache)
    # A change the stream does not read again within its cache time (on PostgreSQL the read is a prepared
    # statement outside Django's query log: the cached facts tell whether it ran).
    Mission.objects.filter(pk=mission.pk).update(status=MissionStatus.ARRIVING)
    ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(2))], source="ws", cache=cache)
    info = cache.peek(mission.pk)
    assert info is not None and info.status != MissionStatus.ARRIVING


def test_a_stream_cache_of_zero_seconds_reads_the_mission_for_every_batch(
    carrier_a: Carrier, mission: Mission, settings: Any
) -> None:
    settings.TELEMETRY_MISSION_CACHE_SECONDS = 0
    cache = MissionCache()
    assert cache.ttl_seconds == 0
    ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(3))], source="ws", cache=cache)
    Mission.objects.filter(pk=mission.pk).update(status=MissionStatus.ARRIVING)
    ingest_events(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(2))], source="ws", cache=cache)
    info = cache.peek(mission.pk)
    assert info is not None and info.status == MissionStatus.ARRIVING


def test_many_missions_batch_uses_a_bounded_number_of_queries(
    carrier_a: Carrier, django_assert_max_num_queries: Any
) -> None:
    missions = [MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(5)]
    events = [make_event(m, ts=seconds_ago(1)) for m in missions]
    # validation + 1 mission query + window/sample writes + one update per mission (SQLite) + gaps look-up
    with django_assert_max_num_queries(8 + len(missions)):
        result = ingest_events(carrier=carrier_a, events=events, source="test")
    assert result.accepted == 5


def test_payload_with_backslashes_quotes_and_unicode_is_stored_verbatim(carrier_a: Carrier, mission: Mission) -> None:
    codes = ["P0301\\x", 'quote"d', "café\tß", "\\N"]
    base = seconds_ago(5).replace(microsecond=100_000)
    event = make_event(mission, ts=base, health={"ecu_errors": codes, "critical_sensors_ok": False})
    # The second event of the same second keeps its payload in the window; the first is the sample.
    later = make_event(mission, ts=base + timedelta(milliseconds=800), health=event["health"])
    assert ingest_events(carrier=carrier_a, events=[event, later], source="test").accepted == 2
    stored = TelemetryWindowEvent.objects.get(event_id=later["event_id"])
    assert stored.payload["health"]["ecu_errors"] == codes
    assert TelemetrySample.objects.get(mission=mission).data["health"]["ecu_errors"] == codes


def test_a_copy_that_meets_a_concurrent_write_falls_back_to_the_merge(
    carrier_a: Carrier, mission: Mission, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COPY path's look-ups can miss what a concurrent batch wrote since: the unique indexes catch it."""
    from django.db import connection

    from missions.telemetry import storage
    from tests.conftest import require_service

    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    base = seconds_ago(30).replace(microsecond=0)
    first = make_event(mission, ts=base)
    assert ingest_events(carrier=carrier_a, events=[first], source="test").accepted == 1
    # As if the look-ups ran before ``first`` was committed by another process.
    monkeypatch.setattr(storage, "_already_stored", lambda accepted: (set(), set()))
    same_second = make_event(mission, ts=base + timedelta(milliseconds=400))
    later = make_event(mission, ts=base + timedelta(seconds=1))
    result = ingest_events(carrier=carrier_a, events=[first, same_second, later], source="test")
    assert (result.accepted, result.duplicates) == (2, 1)
    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == 3
    assert TelemetrySample.objects.filter(mission=mission).count() == 2
    window = telemetry_window(mission_id=mission.pk, start=base, end=base + timedelta(seconds=2))
    assert [e["event_id"] for e in window] == [first["event_id"], same_second["event_id"], later["event_id"]]
