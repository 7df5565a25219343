"""The domain-event registry: after commit, isolated from the write, retried from the stored event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from missions import services
from missions.events import Actor, event_record
from missions.models import AuditEvent, Carrier, EventDelivery, EventDeliveryStatus
from missions.subscriptions import (
    SubscriptionError,
    deliveries_retry,
    event_subscribe,
    event_unsubscribe,
    subscribers,
)

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor.system("test")


class Recorder:
    """A subscriber's handler that fails while ``failures`` is above zero, and records what it saw."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.seen: list[tuple[int, str, dict[str, Any] | None]] = []

    def __call__(self, event: AuditEvent, context: dict[str, Any] | None) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("subscriber is down")
        self.seen.append((event.pk, event.action, context))


@pytest.fixture
def temporary() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        event_unsubscribe(name)


def subscribe(temporary: list[str], name: str, handler: Recorder, **options: Any) -> None:
    event_subscribe(name=name, actions={"test.happened"}, handler=handler, **options)
    temporary.append(name)


def happen(carrier: Carrier) -> AuditEvent:
    with transaction.atomic():
        carrier.name = carrier.name + "!"
        carrier.save(update_fields=["name"])
        return event_record(
            actor=SYSTEM, action="test.happened", subject_type="carrier", subject_id=carrier.pk, carrier=carrier
        )


@pytest.mark.parametrize("via", ["inline", "task"])
def test_a_subscriber_runs_once_after_commit(via: str, carrier_a: Carrier, temporary: list[str]) -> None:
    handler = Recorder()
    subscribe(temporary, f"test.after_commit.{via}", handler, via=via)
    with transaction.atomic():
        event = event_record(actor=SYSTEM, action="test.happened", subject_type="carrier", subject_id=carrier_a.pk)
        assert handler.seen == []  # not before the commit
    assert handler.seen == [(event.pk, "test.happened", None)]


def test_no_subscriber_runs_when_the_write_rolls_back(carrier_a: Carrier, temporary: list[str]) -> None:
    handler = Recorder()
    subscribe(temporary, "test.rollback", handler, via="inline")
    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(actor=SYSTEM, action="test.happened", subject_type="carrier", subject_id=carrier_a.pk)
        raise RuntimeError("the service refused")
    assert handler.seen == []
    assert not AuditEvent.objects.filter(action="test.happened").exists()


@pytest.mark.parametrize("via", ["inline", "task"])
def test_a_failing_subscriber_leaves_the_write_committed_and_is_retried(
    via: str, carrier_a: Carrier, temporary: list[str]
) -> None:
    failing, healthy = Recorder(failures=1), Recorder()
    subscribe(temporary, f"test.failing.{via}", failing, via=via)
    subscribe(temporary, f"test.healthy.{via}", healthy, via=via)

    event = happen(carrier_a)  # does not raise

    carrier_a.refresh_from_db()
    assert carrier_a.name.endswith("!")  # the publishing write stands
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert healthy.seen == [(event.pk, "test.happened", None)]  # the other subscriber was not held up
    delivery = EventDelivery.objects.get(subscriber=f"test.failing.{via}")
    assert (delivery.event_id, delivery.status, delivery.attempts) == (event.pk, EventDeliveryStatus.PENDING, 1)
    assert "subscriber is down" in delivery.last_error

    assert deliveries_retry() == 0  # not due yet: the back-off holds it
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        assert deliveries_retry() == 1
    assert failing.seen == [(event.pk, "test.happened", None)]  # read again from the stored event
    assert not EventDelivery.objects.exists()
    assert len(healthy.seen) == 1  # the healthy one is not run again


def test_a_subscriber_that_keeps_failing_is_given_up_and_kept_for_an_operator(
    carrier_a: Carrier, temporary: list[str], settings: Any
) -> None:
    settings.EVENT_RETRY_ATTEMPTS = 3
    handler = Recorder(failures=10)
    subscribe(temporary, "test.dead", handler, via="inline")
    happen(carrier_a)
    later = timezone.now()
    for _ in range(5):
        later += timedelta(hours=1)
        with time_machine.travel(later):
            deliveries_retry()
    delivery = EventDelivery.objects.get(subscriber="test.dead")
    assert delivery.status == EventDeliveryStatus.DEAD
    assert delivery.attempts == 3  # no attempts after it was given up
    assert handler.failures == 10 - 3


def test_a_subscriber_without_retry_only_logs(carrier_a: Carrier, temporary: list[str]) -> None:
    subscribe(temporary, "test.no_retry", Recorder(failures=1), via="inline", retry=False)
    happen(carrier_a)
    assert not EventDelivery.objects.exists()


def test_when_filters_and_capture_reads_the_publishing_context(carrier_a: Carrier, temporary: list[str]) -> None:
    handler = Recorder()
    subscribe(
        temporary,
        "test.filtered",
        handler,
        via="task",
        when=lambda event: event.subject_id == carrier_a.pk,
        capture=lambda: {"signed_by": "carrier-a"},
    )
    with transaction.atomic():
        event_record(actor=SYSTEM, action="test.happened", subject_type="carrier", subject_id=carrier_a.pk + 1000)
        kept = event_record(actor=SYSTEM, action="test.happened", subject_type="carrier", subject_id=carrier_a.pk)
    assert handler.seen == [(kept.pk, "test.happened", {"signed_by": "carrier-a"})]


def test_a_name_cannot_be_taken_twice(temporary: list[str]) -> None:
    first = Recorder()
    subscribe(temporary, "test.unique", first)
    subscribe(temporary, "test.unique", first)  # the same declaration again (ready() twice) is fine
    with pytest.raises(SubscriptionError):
        event_subscribe(name="test.unique", actions={"test.happened"}, handler=Recorder())
    with pytest.raises(SubscriptionError):
        event_subscribe(name="test.nothing", actions=set(), handler=Recorder())


def test_the_apps_declare_their_reactions() -> None:
    names = {s.name for s in subscribers()}
    assert {
        "runbooks.incident_from_exception",
        "runbooks.incident_from_breaker_trip",
        "runbooks.page_deliver",
        "runbooks.advance",
        "sla.evaluate_on_mission_finished",
        "evidence.attest.mission-outcome",
        "evidence.attest.telemetry-snapshot",
        "tendering.send",
        "missions.live_broadcast",
    } <= names


def test_a_mission_exception_opens_its_incident_through_the_registry(carrier_a: Carrier) -> None:
    """The core records the exception; runbooks' subscriber opens the incident and starts its runbook."""
    from runbooks.models import Incident, RunbookRun
    from runbooks.services import runbooks_seed
    from tests.factories import MissionFactory

    runbooks_seed()
    mission = MissionFactory(carrier=carrier_a)
    exc = services.mission_exception_report(mission_id=mission.pk, kind="lost_comms", actor=SYSTEM, detail="silent")
    incident = Incident.objects.get(mission=mission)
    assert incident.kind == "lost_comms"
    assert RunbookRun.objects.filter(incident=incident).exists()
    assert AuditEvent.objects.filter(incident_id=incident.pk, action="incident.triggered").exists()
    assert exc.correlation_id == incident.correlation_id


def test_a_task_the_broker_lost_is_still_delivered_from_its_outbox_row(
    carrier_a: Carrier, temporary: list[str], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """The task is accepted by the broker and then lost (a Redis without persistence restarted)."""
    from missions import subscriptions

    settings.EVENT_TASK_GRACE_SECONDS = 120
    handler = Recorder()
    subscribe(temporary, "test.lost_task", handler, via="task")
    lost: list[tuple[Any, ...]] = []
    monkeypatch.setattr(subscriptions.event_deliver, "delay", lambda *args: lost.append(args))
    event = happen(carrier_a)
    assert lost == [(event.pk, "test.lost_task", None)] and handler.seen == []
    owed = EventDelivery.objects.get(event=event, subscriber="test.lost_task")
    assert (owed.status, owed.attempts) == (EventDeliveryStatus.PENDING, 0)

    assert deliveries_retry() == 0  # within the grace the queued task may still come
    with time_machine.travel(timezone.now() + timedelta(seconds=121)):
        assert deliveries_retry() == 1
    assert handler.seen == [(event.pk, "test.happened", None)]
    assert not EventDelivery.objects.exists()


def test_a_task_that_ran_leaves_no_outbox_row(carrier_a: Carrier, temporary: list[str]) -> None:
    handler = Recorder()
    subscribe(temporary, "test.ran_task", handler, via="task")
    event = happen(carrier_a)
    assert handler.seen == [(event.pk, "test.happened", None)]
    assert not EventDelivery.objects.filter(event=event).exists()
