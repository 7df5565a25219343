"""The demo seed and the carrier simulator agree from the first second (docs/decisions/0018).

Whichever starts first: a running simulator is handed the tenders the seed marks sent; one that starts
after the seed restores them from the database (as ``run_carrier_sim`` does before serving). Either way
the first poll cycle finds every seeded tender known, and no carrier call fails.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from missions.choices import TenderStatus
from missions.management.commands.run_carrier_sim import demo_books_restore
from missions.management.commands.seed_demo import DEMO_CARRIERS
from missions.models import AuditEvent, Tender
from missions.models.outbound import OutboundCall
from missions.simulators.carrier import CarrierSimulator, SimConfig
from missions.tendering import tasks
from missions.tendering.carrier_client import CarrierClient
from tms_console.demo import carrier_sim_client_secret

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_VEHICLES = {spec.slug: list(spec.vehicles) for spec in DEMO_CARRIERS if spec.has_api}


def demo_simulator(port: int = 0) -> CarrierSimulator:
    """The simulator as ``make run`` starts it: the demo carriers under /carriers/<slug>, default policy."""
    config = SimConfig(secret_for=carrier_sim_client_secret, tenant_vehicles=dict(DEMO_VEHICLES), seed=7)
    return CarrierSimulator(config, port=port)


@pytest.fixture(autouse=True)
def _demo_env(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "seed-test-password-42")
    settings.CARRIER_RETRY_BASE_SECONDS = 0.0
    settings.CARRIER_RETRY_CAP_SECONDS = 0.0


@pytest.fixture
def sim() -> Iterator[CarrierSimulator]:
    running = demo_simulator().start()
    yield running
    running.stop()


def seed(sim_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CARRIER_SIM_URL", sim_url)
    out = StringIO()
    call_command("seed_demo", "--quiet-logins", stdout=out)
    return out.getvalue()


def first_poll_cycle() -> int:
    """The beat's poll sweep once the seeded tenders are due (as CARRIER_POLL_AFTER_SECONDS later)."""
    Tender.objects.filter(status=TenderStatus.SENT).update(updated_at=timezone.now() - timedelta(minutes=1))
    polled: int = tasks.tenders_poll_sent.delay().get()
    return polled


def assert_every_seeded_tender_is_known(sim: CarrierSimulator) -> None:
    seeded = list(Tender.objects.filter(status=TenderStatus.SENT).exclude(carrier__api_base_url=""))
    assert len(seeded) == 2  # one TENDERING shipment per autonomous demo carrier
    for tender in seeded:
        polls = OutboundCall.objects.filter(tender=tender, operation="tender_status")
        assert [(c.status_code, c.ok) for c in polls] == [(200, True)]
        books = sim.state.tenders[tender.external_ref]
        assert (books.tender_id, books.tenant, books.status) == (tender.pk, tender.carrier.slug, "pending")
    assert not OutboundCall.objects.filter(ok=False).exists()
    assert not AuditEvent.objects.filter(action__in=("tender.resent", "tender.lost")).exists()
    assert not [r for r in sim.requests if r["method"] == "POST" and r["path"] == "/tenders"]


def test_a_running_simulator_is_handed_the_seeded_tenders(
    sim: CarrierSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = seed(sim.url, monkeypatch)

    assert "Handed 2 sent demo tenders to the running carrier simulator." in output
    assert first_poll_cycle() == 2
    assert_every_seeded_tender_is_known(sim)
    # The books hold the very body and key the console sends: a resend is a replay, not a second tender.
    tender = Tender.objects.filter(status=TenderStatus.SENT).exclude(carrier__api_base_url="").first()
    assert tender is not None
    with CarrierClient(tender.carrier) as client:
        assert client.tender_resend(tender)["ref"] == tender.external_ref
    assert sim.tender_count() == 2


def test_a_simulator_started_after_the_seed_restores_the_tenders(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a free port, closed again: nothing listens there during the seed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = seed(f"http://127.0.0.1:{port}", monkeypatch)
    assert "it restores them from the database when it starts" in output

    late = demo_simulator(port)
    try:
        assert demo_books_restore(late, list(DEMO_VEHICLES)) == 2
        late.start()
        assert first_poll_cycle() == 2
        assert_every_seeded_tender_is_known(late)
    finally:
        late.stop()


def test_seeding_again_hands_nothing_over(sim: CarrierSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(sim.url, monkeypatch)
    again = seed(sim.url, monkeypatch)
    assert "nothing new" in again and "Handed" not in again
    assert sim.tender_count() == 2
