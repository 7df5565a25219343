"""A real Celery worker on the real broker sends a tender to the simulator (services mode only)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from missions.choices import TenderStatus
from missions.models import Mission, Shipment, Tender
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import tender_to
from tests.workers import worker_env, worker_start
from tms_console.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker() -> Iterator[None]:
    env = worker_env()
    app.control.purge()
    proc = worker_start(env)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = eager
        proc.terminate()
        proc.wait(timeout=20)


def _wait_for(tender_id: int, *, statuses: set[str], deadline_s: float = 60.0) -> Tender:
    # Polling with a generous deadline: this waits for the worker, it does not measure it.
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        tender = Tender.objects.get(pk=tender_id)
        if tender.status in statuses:
            return tender
        time.sleep(0.25)
    return Tender.objects.get(pk=tender_id)


def test_worker_sends_the_tender_and_the_carrier_accepts(
    worker: None, make_sim: SimFactory, shipment: Shipment
) -> None:
    sim = make_sim(policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Auto Worker")

    tender = tender_to(shipment, carrier)
    assert tender.status == TenderStatus.PENDING  # not eager: the worker has it

    tender = _wait_for(tender.pk, statuses={TenderStatus.ACCEPTED, TenderStatus.FAILED, TenderStatus.REJECTED})
    assert tender.status == TenderStatus.ACCEPTED
    assert Mission.objects.get(tender=tender).carrier_id == carrier.pk
    assert sim.tender_count() == 1
