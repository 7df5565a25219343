"""A real Celery worker on the real broker sends a tender to the simulator (services mode only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from missions.choices import TenderStatus
from missions.models import Mission, Shipment, Tender
from tests.conftest import require_service
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import tender_to
from tms_console.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker() -> Iterator[None]:
    require_service("PostgreSQL", settings.IS_POSTGRES)
    require_service("Redis broker", settings.CELERY_BROKER_URL.startswith("redis://"))
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        # The worker must see the rows this test commits: point it at the test database.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
    }
    app.control.purge()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tms_console",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
