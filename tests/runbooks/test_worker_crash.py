"""Kill the Celery worker in the middle of an automated runbook step; the run completes once.

Real broker (Redis) and PostgreSQL: the worker is a separate process that
works on the test database. The paging step's HTTP call is held open by a slow
receiver, the worker is killed with SIGKILL while it waits, a new worker is
started, and the periodic tick (sent through the broker as beat would) takes
the step over once its lease has run out.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from missions.choices import CarrierKind, ExceptionKind, MissionStatus
from missions.events import Actor
from missions.models import AuditEvent, Mission, Tender
from missions.services import mission_exception_report
from runbooks.choices import StepStatus
from runbooks.models import Incident, StepRun
from runbooks.tasks import runbooks_tick
from tests.factories import CarrierFactory, ContractFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.runbooks.pager import PagerReceiver
from tests.workers import worker_env, worker_start
from tms_console.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]
BASE_DIR = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3
RECOVERY_TIMEOUT_SECONDS = 10  # the smallest a contract may set
AWAIT_STEP, FAILOVER_STEP = 5, 6  # in the lost-comms runbook (runbooks/definitions.py)


class SlowPager(PagerReceiver):
    """Holds the first call open so the worker can be killed while it waits for the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.first_call = threading.Event()
        handler = self.server.RequestHandlerClass
        original: Callable[[Any], None] = handler.do_POST  # type: ignore[attr-defined]
        pager = self

        def do_post(request_handler: Any) -> None:
            if not pager.first_call.is_set():
                pager.first_call.set()
                time.sleep(6)
            original(request_handler)

        handler.do_POST = do_post  # type: ignore[attr-defined]


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pager() -> Iterator[SlowPager]:
    receiver = SlowPager()
    yield receiver
    receiver.close()


@pytest.fixture
def start_worker(pager: SlowPager) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    with workers(pager.url) as start:
        yield start


@contextmanager
def workers(pager_url: str) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start workers on the real broker (each call one more); all are stopped afterwards."""
    env = worker_env(
        PAGERDUTY_EVENTS_URL=pager_url,
        PAGERDUTY_ATTEMPTS="1",
        RUNBOOK_STEP_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    app.control.purge()
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = worker_start(env)
        workers.append(proc)
        return proc

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield start
    finally:
        app.conf.task_always_eager = eager
        for proc in workers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        app.control.purge()


def test_killed_worker_mid_step_runbook_completes_exactly_once(
    start_worker: Callable[[], subprocess.Popen[bytes]], pager: SlowPager
) -> None:
    first = start_worker()
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    # The exception's incident and its runbook are queued to the real broker after commit.
    mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.OTA_FAILURE, actor=Actor.for_carrier(mission.carrier)
    )
    wait_until(lambda: Incident.objects.filter(mission=mission).exists(), 60, "the incident")
    incident = Incident.objects.get(mission=mission)
    assert pager.first_call.wait(60), "the worker never reached the paging step"

    first.kill()  # SIGKILL while the page is in flight
    first.wait(timeout=20)
    page_step = StepRun.objects.get(run__incident=incident, step__position=3)
    assert page_step.status == StepStatus.RUNNING  # interrupted mid-way

    start_worker()

    def done() -> bool:
        runbooks_tick.delay()  # what beat sends every two seconds
        return StepRun.objects.get(pk=page_step.pk).status == StepStatus.DONE

    wait_until(done, 90, "the paging step to be taken over and finished")
    wait_until(
        lambda: StepRun.objects.get(run__incident=incident, step__position=4).status == StepStatus.WAITING,
        30,
        "the manual step",
    )
    page_step.refresh_from_db()
    assert page_step.attempts == 2
    events = AuditEvent.objects.filter(incident_id=incident.pk)
    done_steps = sorted(e.data["step"] for e in events.filter(action="runbook.step_done"))
    assert done_steps == [1, 2, 3]  # every automated step finished exactly once
    assert AuditEvent.objects.filter(carrier=mission.carrier, action="carrier.fleet_paused").count() == 1
    triggers = [c for c in pager.calls if c["event_action"] == "trigger"]
    # The interrupted call may or may not have reached the receiver: the retry carries the same
    # dedup key, so PagerDuty keeps one alert.
    assert {c["dedup_key"] for c in triggers} == {f"tms-incident-{incident.pk}"}


@contextmanager
def mission_row_locked(mission_id: int) -> Iterator[None]:
    """Hold the mission's row lock from a connection of our own: the failover step waits for it.

    ``FOR NO KEY UPDATE`` stops the failover's ``select_for_update`` of the mission, not the
    foreign-key checks of the rows the earlier steps write about it.
    """
    conn = psycopg.connect(worker_env()["DATABASE_URL"])
    try:
        conn.execute("SELECT 1 FROM missions_mission WHERE id = %s FOR NO KEY UPDATE", [mission_id])
        yield
    finally:
        conn.rollback()
        conn.close()


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_killed_worker_in_the_failover_step_books_exactly_one_fallback_tender() -> None:
    """Lost comms: the worker is SIGKILLed inside the failover step itself; the next one books the fallback once."""
    carrier = CarrierFactory(operating_regions=["TX"])
    ContractFactory(carrier=carrier, recovery_timeout_seconds=RECOVERY_TIMEOUT_SECONDS)
    CarrierFactory(
        kind=CarrierKind.HUMAN_DRIVEN,
        is_fallback=True,
        fallback_rate_usd_per_km=Decimal("2.35"),
        operating_regions=["TX"],
    )
    mission = MissionFactory(
        carrier=carrier,
        vehicle=VehicleFactory(carrier=carrier),
        shipment=ShipmentFactory(),
        status=MissionStatus.EN_ROUTE,
    )
    receiver = PagerReceiver()
    try:
        with workers(receiver.url) as start_worker:
            first = start_worker()
            mission_exception_report(
                mission_id=mission.pk, kind=ExceptionKind.LOST_COMMS, actor=Actor.system("telemetry-gap-detector")
            )
            wait_until(lambda: Incident.objects.filter(mission=mission).exists(), 60, "the incident")
            incident = Incident.objects.get(mission=mission)

            def step(position: int) -> StepRun | None:
                return StepRun.objects.filter(run__incident=incident, step__position=position).first()

            def runbooks_tick_sent() -> None:
                runbooks_tick.delay()  # what beat sends every two seconds

            def awaiting() -> bool:
                runbooks_tick_sent()
                found = step(AWAIT_STEP)
                return found is not None and found.started_at is not None

            wait_until(awaiting, 60, "the wait for recovery")
            with mission_row_locked(mission.pk):

                def in_failover() -> bool:
                    runbooks_tick_sent()
                    found = step(FAILOVER_STEP)
                    return found is not None and found.status == StepStatus.RUNNING and lock_waiters() > 0

                wait_until(in_failover, RECOVERY_TIMEOUT_SECONDS + 60, "the worker to enter the failover step")
                first.kill()  # SIGKILL inside the failover step
                first.wait(timeout=20)
            start_worker()

            def failed_over() -> bool:
                runbooks_tick_sent()
                found = step(FAILOVER_STEP)
                return found is not None and found.status == StepStatus.DONE

            wait_until(failed_over, 90, "the failover step to be taken over and finished")
    finally:
        receiver.close()
    failover = step(FAILOVER_STEP)
    assert failover is not None and failover.attempts == 2
    # Exactly one fallback tender and one replacement mission, on PostgreSQL, whatever the kill.
    assert Tender.objects.filter(shipment=mission.shipment, is_fallback=True).count() == 1
    assert Mission.objects.filter(replaces=mission).count() == 1
