"""A running step's lease is short and renewed by a heartbeat while the action runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from missions.choices import ExceptionKind, MissionStatus
from missions.events import Actor
from missions.services import mission_exception_report
from runbooks import engine
from runbooks.actions import ACTIONS, Outcome, action_register
from runbooks.choices import StepStatus
from runbooks.detection import incident_from_exception
from runbooks.models import Incident, RunbookRun, RunbookStep, StepRun
from runbooks.services import runbooks_seed
from tests.factories import ContractFactory, MissionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.shared_database]


@pytest.fixture
def slow_first_step(settings: Any) -> Iterator[dict[str, Any]]:
    """Replace the lost-comms runbook's first action by one that outlives the lease and looks around."""
    settings.RUNBOOK_STEP_LEASE_SECONDS = 1
    seen: dict[str, Any] = {}
    original = ACTIONS["record_last_known"]

    def slow(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
        claimed = StepRun.objects.get(run=run, step=step)
        seen["first_lease"] = claimed.lease_until
        time.sleep(2.5)  # well past the 1 s lease it was given
        renewed = StepRun.objects.get(pk=claimed.pk)
        seen["lease_after"] = renewed.lease_until
        seen["lease_live"] = renewed.lease_until is not None and renewed.lease_until > timezone.now()
        return Outcome.done(note="slow but alive")

    action_register("record_last_known", slow)
    yield seen
    action_register("record_last_known", original)


def test_a_live_worker_keeps_its_step_past_the_lease(slow_first_step: dict[str, Any]) -> None:
    runbooks_seed()
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    ContractFactory(carrier=mission.carrier, recovery_timeout_seconds=300)
    exc = mission_exception_report(mission_id=mission.pk, kind=ExceptionKind.LOST_COMMS, actor=Actor.system("t"))
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    # (The runbook started after the exception committed and ran its first step at once.)
    # The heartbeat pushed the lease forward while the action ran, so the tick never saw the step
    # as abandoned and no second worker could have taken it over.
    assert slow_first_step["lease_after"] > slow_first_step["first_lease"]
    assert slow_first_step["lease_live"] is True
    first = StepRun.objects.get(run=incident.run, step__position=1)
    assert first.status == StepStatus.DONE and first.attempts == 1 and first.lease_until is None


def test_renewal_stops_once_the_step_is_no_longer_running() -> None:
    runbooks_seed()
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    exc = mission_exception_report(mission_id=mission.pk, kind=ExceptionKind.LOST_COMMS, actor=Actor.system("t"))
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    step = StepRun.objects.filter(run=incident.run).order_by("step__position").first()
    assert step is not None
    assert engine.lease_renew(step_run_id=step.pk) is False  # pending, not running: nothing to renew
    StepRun.objects.filter(pk=step.pk).update(status=StepStatus.RUNNING)
    assert engine.lease_renew(step_run_id=step.pk) is True
    step.refresh_from_db()
    assert step.lease_until is not None and step.lease_until > timezone.now()
