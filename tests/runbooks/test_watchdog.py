"""The safety ticker: with beat or the broker down, gaps still raise incidents, each once, and on-call hears of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from missions.choices import ExceptionKind, MissionStatus
from missions.models import Carrier, EventDelivery, MissionException
from missions.subscriptions import event_deliver
from missions.telemetry.ingest import ingest_events
from runbooks import tasks
from runbooks.choices import IncidentKind, IncidentStatus
from runbooks.models import Incident, PagerMessage, RunbookRun
from runbooks.services import runbooks_seed
from runbooks.watchdog import safety_tick
from tests.factories import MissionFactory, VehicleFactory
from tests.telemetry.conftest import make_event
from tms_console.health import heartbeat_record

pytestmark = pytest.mark.django_db(transaction=True)  # subscribers run at real commits

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every publish to the broker fails, as with Redis down."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(event_deliver, "delay", refuse)
    monkeypatch.setattr(tasks.runbook_advance_task, "apply_async", refuse)


def silent_mission(carrier: Carrier, external_id: str) -> Any:
    mission = MissionFactory(
        carrier=carrier, vehicle=VehicleFactory(carrier=carrier, external_id=external_id), status=MissionStatus.EN_ROUTE
    )
    result = ingest_events(carrier=carrier, events=[make_event(mission, ts=datetime.now(UTC))], source="test")
    assert result.accepted == 1
    return mission


def lost_comms_incidents() -> int:
    return Incident.objects.filter(kind="lost_comms").count()


def test_broker_down_gaps_still_page_each_once_then_recovery(carrier_a: Carrier, broker_down: None) -> None:
    runbooks_seed()
    with time_machine.travel(T0, tick=False) as clock:
        heartbeat_record(name="beat")
        heartbeat_record(name="worker")
        first = silent_mission(carrier_a, "LSA-1")
        second = silent_mission(carrier_a, "LSA-2")

        clock.shift(20)  # heartbeats still fresh: the ticker leaves the work to beat and the worker
        report = safety_tick(holder="web-1")
        assert not report.degraded and not report.holder
        assert not Incident.objects.exists()

        clock.shift(45)  # 65 s: the worker and beat are silent past 30 s, the vehicles past their 60 s threshold
        report = safety_tick(holder="web-1")
        assert report.degraded and report.holder
        assert report.pipeline == {"beat": "stale", "worker": "stale"}
        monitoring = Incident.objects.get(kind=IncidentKind.MONITORING_DEGRADED)
        assert monitoring.severity == "critical"
        assert PagerMessage.objects.filter(incident=monitoring, event_action="trigger").count() == 1
        # Both silent vehicles raised lost comms, and their incidents opened in-process (no broker).
        assert report.gaps_raised == 2
        assert lost_comms_incidents() == 2
        for mission in (first, second):
            assert MissionException.objects.filter(mission=mission, kind=ExceptionKind.LOST_COMMS).count() == 1
            assert RunbookRun.objects.filter(incident__mission=mission).exists()

        report_b = safety_tick(holder="web-2")  # a second web process: the lease is taken
        assert report_b.degraded and not report_b.holder

        clock.shift(5)  # the outage goes on: nothing is raised twice
        report = safety_tick(holder="web-1")
        assert report.gaps_raised == 0
        assert lost_comms_incidents() == 2
        assert Incident.objects.filter(kind=IncidentKind.MONITORING_DEGRADED).count() == 1

        heartbeat_record(name="beat")  # beat and the worker are back
        heartbeat_record(name="worker")
        report = safety_tick(holder="web-1")
        assert not report.degraded
        assert report.recovered == [monitoring.pk]
        monitoring.refresh_from_db()
        assert monitoring.status == IncidentStatus.RESOLVED


def test_a_subscriber_that_could_not_be_enqueued_is_kept_for_retry(carrier_a: Carrier, broker_down: None) -> None:
    """Outside the ticker, a broker outage leaves a delivery to retry: the exception is not lost."""
    from missions.events import Actor
    from missions.services import mission_exception_report
    from missions.subscriptions import deliveries_retry, tasks_inline

    runbooks_seed()
    mission = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    mission_exception_report(mission_id=mission.pk, kind="lost_comms", actor=Actor.system("test"))
    delivery = EventDelivery.objects.get(subscriber="runbooks.incident_from_exception")
    assert "Connection refused" in delivery.last_error
    assert not Incident.objects.exists()
    EventDelivery.objects.update(next_attempt_at=datetime.now(UTC))
    with tasks_inline():
        assert deliveries_retry() >= 1  # the retry reads the stored event and opens the incident
    assert Incident.objects.filter(mission=mission, kind="lost_comms").count() == 1
    assert not EventDelivery.objects.filter(subscriber="runbooks.incident_from_exception").exists()
