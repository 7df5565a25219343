"""Replay of the event log from a cursor, and retention of samples and the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.services import carrier_pause, mission_exception_report, mission_transition
from missions.telemetry.ingest import ingest_events
from missions.telemetry.replay import events_after
from missions.telemetry.retention import telemetry_purge, telemetry_window_prune
from tests.factories import MissionFactory
from tests.telemetry.conftest import make_event

pytestmark = pytest.mark.django_db


def test_replay_returns_mission_events_after_the_cursor_scoped_to_the_carrier(
    carrier_a: Carrier, carrier_b: Carrier, mission: Mission, system_actor: Actor
) -> None:
    other = MissionFactory(carrier=carrier_b, status=MissionStatus.EN_ROUTE)
    mission_transition(mission_id=mission.pk, to_status=MissionStatus.ARRIVING, actor=system_actor)
    cursor = events_after(carrier_id=carrier_a.pk, after=0, limit=100)[0].pk
    carrier_pause(carrier_id=carrier_a.pk, actor=system_actor, reason="maintenance")  # not a mission event
    mission_exception_report(mission_id=other.pk, kind="degraded_sensors", actor=system_actor)
    ingest_events(
        carrier=carrier_a,
        events=[make_event(mission, autonomy_mode="supervised", safety_event="collision_avoidance")],
        source="test",
    )
    mine = list(events_after(carrier_id=carrier_a.pk, after=cursor, limit=100))
    actions = [e.action for e in mine]
    # The mode change comes first; the safety exception follows (the domain may add its own, e.g. mode_degraded).
    assert actions[0] == "mission.mode_changed"
    assert any(e.action == "mission.exception" and e.after["kind"] == "collision_avoidance" for e in mine)
    assert "carrier.paused" not in actions and "carrier.fleet_paused" not in actions
    assert all(e.carrier_id == carrier_a.pk for e in mine)
    assert [e.pk for e in mine] == sorted(e.pk for e in mine)
    everyone = list(events_after(carrier_id=None, after=cursor, limit=100))
    assert len(everyone) == len(mine) + 1  # carrier B's exception
    assert list(events_after(carrier_id=None, after=cursor, limit=1)) == everyone[:1]
    assert list(events_after(carrier_id=None, after=everyone[-1].pk, limit=10)) == []


def test_purge_deletes_old_samples_and_thins_middle_aged_ones(
    carrier_a: Carrier, mission: Mission, settings: Any
) -> None:
    settings.TELEMETRY_THIN_AFTER_DAYS = 7
    settings.TELEMETRY_THIN_SECONDS = 10
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def sample(at: datetime) -> None:
        TelemetrySample.objects.create(
            mission=mission, vehicle=mission.vehicle, recorded_at=at, lat=0, lon=0, bucket_s=int(at.timestamp())
        )

    for s in range(20):
        sample(now - timedelta(days=40) + timedelta(seconds=s))  # past retention
        sample(now - timedelta(days=10) + timedelta(seconds=s))  # thinned to one per 10 s
        sample(now - timedelta(days=1) + timedelta(seconds=s))  # untouched
    with time_machine.travel(now, tick=False):
        result = telemetry_purge(days=30)
    # On PostgreSQL these days have no partition (the migration made today's): the DEFAULT one is cleaned row by row.
    assert result == {"purged": 20, "thinned": 18, "partitions_dropped": 0, "partitions_thinned": 0}
    assert TelemetrySample.objects.count() == 22


def test_window_rows_are_pruned_after_the_dedupe_horizon(carrier_a: Carrier, mission: Mission, settings: Any) -> None:
    settings.TELEMETRY_DEDUPE_SECONDS = 900
    t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with time_machine.travel(t0, tick=False) as clock:
        event = make_event(mission, ts=t0 - timedelta(hours=3))  # a late, buffered event
        ingest_events(carrier=carrier_a, events=[event], source="test")
        clock.shift(899)
        assert telemetry_window_prune() == 0
        assert ingest_events(carrier=carrier_a, events=[event], source="test").duplicates == 1
        clock.shift(2)
        assert telemetry_window_prune() == 1
    assert not TelemetryWindowEvent.objects.exists()
