"""Gap detection: one lost-comms exception per silence, thresholds from the contract, time-machine driven."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine

from missions.choices import ExceptionKind, MissionStatus
from missions.models import AuditEvent, Carrier, Mission, MissionException
from missions.models.telemetry import TelemetryGap, TelemetrySnapshot
from missions.telemetry.gaps import gap_candidates, gap_detector_loop, telemetry_gaps_check
from missions.telemetry.ingest import ingest_events
from missions.telemetry.tasks import gaps_check
from tests.factories import ContractFactory, MissionFactory
from tests.telemetry.conftest import make_event

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def send(carrier: Carrier, mission: Mission) -> None:
    result = ingest_events(carrier=carrier, events=[make_event(mission, ts=datetime.now(UTC))], source="test")
    assert result.accepted == 1


def lost_comms(mission: Mission) -> int:
    return MissionException.objects.filter(mission=mission, kind=ExceptionKind.LOST_COMMS).count()


def test_one_exception_per_gap_and_again_after_telemetry_resumes(carrier_a: Carrier, mission: Mission) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        send(carrier_a, mission)
        clock.shift(59)
        assert telemetry_gaps_check() == 0  # default threshold 60 s not yet passed
        clock.shift(2)
        assert telemetry_gaps_check() == 1
        assert lost_comms(mission) == 1
        for _ in range(5):  # the same silence goes on: no second exception
            clock.shift(5)
            assert gaps_check() == 0
        assert lost_comms(mission) == 1
        exc = MissionException.objects.get(mission=mission)
        assert exc.data["gap_seconds"] == 60 and exc.reported_by == "system"
        assert TelemetrySnapshot.objects.filter(mission=mission, reason="lost_comms", exception=exc).exists()

        send(carrier_a, mission)  # telemetry resumes
        gap = TelemetryGap.objects.get(mission=mission)
        assert gap.resumed_at == datetime.now(UTC)
        assert AuditEvent.objects.filter(mission=mission, action="mission.telemetry_resumed").count() == 1
        clock.shift(30)
        assert telemetry_gaps_check() == 0
        clock.shift(31)  # ...and stops again
        assert telemetry_gaps_check() == 1
        assert lost_comms(mission) == 2


def test_contract_threshold_overrides_the_default(carrier_a: Carrier, carrier_b: Carrier) -> None:
    fast = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    default = MissionFactory(carrier=carrier_b, status=MissionStatus.EN_ROUTE)
    with time_machine.travel(T0, tick=False) as clock:
        ContractFactory(carrier=carrier_a, telemetry_gap_seconds=10, effective_from=date(2026, 1, 1))
        # An expired contract of carrier B does not apply.
        ContractFactory(
            carrier=carrier_b, telemetry_gap_seconds=5, effective_from=date(2025, 1, 1), effective_to=date(2026, 1, 1)
        )
        send(carrier_a, fast)
        send(carrier_b, default)
        clock.shift(11)
        assert [c.mission_id for c in gap_candidates(now=datetime.now(UTC))] == [fast.pk]
        assert telemetry_gaps_check() == 1
        clock.shift(50)
        assert telemetry_gaps_check() == 1
        assert (lost_comms(fast), lost_comms(default)) == (1, 1)


def test_finished_and_silent_from_the_start_missions_are_ignored(carrier_a: Carrier) -> None:
    done = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)  # never reported
    with time_machine.travel(T0, tick=False) as clock:
        send(carrier_a, done)
        Mission.objects.filter(pk=done.pk).update(status=MissionStatus.COMPLETED)
        clock.shift(3600)
        assert telemetry_gaps_check() == 0


def test_candidates_are_found_with_one_query(carrier_a: Carrier, django_assert_num_queries: Any) -> None:
    missions = [MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(6)]
    with time_machine.travel(T0, tick=False) as clock:
        for m in missions:
            send(carrier_a, m)
        clock.shift(120)
        with django_assert_num_queries(1):
            found = gap_candidates(now=datetime.now(UTC))
        assert len(found) == 6
        # A mission reporting again between the scan and the raise is not flagged.
        send(carrier_a, missions[0])
        assert telemetry_gaps_check() == 5
        assert lost_comms(missions[0]) == 0
        assert timedelta(seconds=0) <= datetime.now(UTC) - T0


def test_the_silence_that_crossed_its_threshold_first_is_raised_first(carrier_a: Carrier, carrier_b: Carrier) -> None:
    ContractFactory(carrier=carrier_a, telemetry_gap_seconds=5, effective_from=date(2026, 1, 1))
    ContractFactory(carrier=carrier_b, telemetry_gap_seconds=30, effective_from=date(2026, 1, 1))
    slow = MissionFactory(carrier=carrier_b, status=MissionStatus.EN_ROUTE)
    fast = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    with time_machine.travel(T0, tick=False) as clock:
        send(carrier_b, slow)  # silent first, but crosses its 30 s threshold at T0 + 30
        clock.shift(10)
        send(carrier_a, fast)  # silent later, crosses its 5 s threshold at T0 + 15
        clock.shift(30)
        assert [c.mission_id for c in gap_candidates(now=datetime.now(UTC))] == [fast.pk, slow.pk]


def test_the_detector_loop_runs_a_pass_each_period_and_outlives_a_failing_one() -> None:
    stop = threading.Event()
    passes: list[float] = []

    def check() -> int:
        passes.append(time.monotonic())
        if len(passes) == 1:
            raise RuntimeError("database away")
        if len(passes) == 3:
            stop.set()
        return 0

    gap_detector_loop(stop=stop, period=0.05, check=check)
    assert len(passes) == 3
    assert passes[2] - passes[1] >= 0.04  # a period apart, not back to back


def test_beat_starts_the_detector_thread_instead_of_scheduling_the_task(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from missions.telemetry import tasks

    assert "telemetry-gaps" not in settings.CELERY_BEAT_SCHEDULE  # TELEMETRY_GAP_DETECTOR_IN_BEAT is on
    assert settings.TELEMETRY_GAP_CHECK_SECONDS == 1.0
    seen: list[float] = []
    monkeypatch.setattr(tasks, "gap_detector_loop", lambda *, stop, period: seen.append(period))
    thread = tasks.gap_detector_start()
    assert thread is not None and thread.name == "gap-detector"
    thread.join(5)
    assert seen == [1.0]
    settings.TELEMETRY_GAP_DETECTOR_IN_BEAT = False
    assert tasks.gap_detector_start() is None


@pytest.mark.django_db(transaction=True)
def test_a_pass_skips_a_mission_another_transaction_holds_and_raises_the_rest_at_once(carrier_a: Carrier) -> None:
    """PostgreSQL: overlapping passes split the work instead of queueing on each other's row locks."""
    import psycopg
    from django.db import connection

    from tests.conftest import require_service

    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    ContractFactory(carrier=carrier_a, telemetry_gap_seconds=5, effective_from=date(2026, 1, 1))
    missions = [MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(6)]
    seen = datetime.now(UTC) - timedelta(seconds=30)
    Mission.objects.filter(pk__in=[m.pk for m in missions]).update(last_seen_at=seen)
    held = missions[2]
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    try:
        other.execute("SELECT 1 FROM missions_mission WHERE id = %s FOR UPDATE", [held.pk])
        started = time.monotonic()
        assert telemetry_gaps_check() == 5  # several threads (TELEMETRY_GAP_WORKERS), none waits
        assert time.monotonic() - started < 30
        assert lost_comms(held) == 0
    finally:
        other.rollback()
        other.close()
    assert telemetry_gaps_check() == 1  # the next pass raises the one it skipped
    assert [lost_comms(m) for m in missions] == [1] * 6


@pytest.mark.django_db(transaction=True)
def test_a_threaded_pass_leaves_celerys_join_flag_as_it_found_it(carrier_a: Carrier) -> None:
    """Eager tasks applied on several threads at once race on Celery's process-wide "inside a task" flag;
    left set, every later ``result.get()`` in the process refuses. The pass puts it back."""
    from celery._state import task_join_will_block  # type: ignore[attr-defined]
    from django.db import connection

    from tests.conftest import require_service

    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    ContractFactory(carrier=carrier_a, telemetry_gap_seconds=5, effective_from=date(2026, 1, 1))
    missions = [MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(24)]
    Mission.objects.filter(pk__in=[m.pk for m in missions]).update(
        last_seen_at=datetime.now(UTC) - timedelta(seconds=30)
    )
    assert not task_join_will_block()
    assert telemetry_gaps_check() == 24
    assert not task_join_will_block()
