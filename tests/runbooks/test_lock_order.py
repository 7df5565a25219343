"""A step finishing while the tick claims the same run: both take the run's row first, so neither deadlocks.

``_claim_next`` (the tick, or the next advance) locks the run, then its steps. Finishing a step used to
lock the step, then the run: the two orders met under load and PostgreSQL broke the deadlock by
failing one of them. Here the claim's side holds the run while a worker finishes a step of it, then
reaches for that step, as ``_claim_next`` does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from missions.choices import ExceptionKind, MissionStatus
from missions.events import Actor
from missions.services import mission_exception_report
from runbooks import engine
from runbooks.actions import Outcome
from runbooks.choices import StepStatus
from runbooks.detection import incident_from_exception
from runbooks.models import RunbookRun, StepRun
from runbooks.services import runbooks_seed
from tests.factories import ContractFactory, MissionFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.shared_database,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's (SQLite locks the file)"),
]


def test_finishing_a_step_while_the_run_is_claimed_waits_instead_of_deadlocking() -> None:
    runbooks_seed()
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    ContractFactory(carrier=mission.carrier, recovery_timeout_seconds=300)
    exc = mission_exception_report(mission_id=mission.pk, kind=ExceptionKind.LOST_COMMS, actor=Actor.system("t"))
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    step = StepRun.objects.filter(run=incident.run, status=StepStatus.PENDING).order_by("step__position").first()
    assert step is not None
    StepRun.objects.filter(pk=step.pk).update(status=StepStatus.RUNNING)  # a worker is running it

    errors: list[BaseException] = []
    finished: dict[str, Any] = {}
    run_held = threading.Event()

    def claim_side() -> None:
        try:
            with transaction.atomic():
                RunbookRun.objects.select_for_update().get(pk=incident.run.pk)
                run_held.set()
                time.sleep(1.0)  # the worker's finish is under way meanwhile
                StepRun.objects.select_for_update().get(pk=step.pk)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def finish_side() -> None:
        run_held.wait(10)
        try:
            finished["wait"] = engine._finish(step_run_id=step.pk, outcome=Outcome.done(note="finished"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_side), threading.Thread(target=finish_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, f"a side failed: {errors!r}"
    assert "wait" in finished and finished["wait"] is None
    step.refresh_from_db()
    assert step.status == StepStatus.DONE
