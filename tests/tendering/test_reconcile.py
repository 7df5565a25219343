"""Tenders whose submit failed after it may have reached the carrier (missions/tendering/reconcile.py).

Each test makes the submit time out at a real simulator (its ``timeout`` fault holds the request and
drops it), then lets the carrier answer again and runs the reconcile round: the resend under the same
``Idempotency-Key`` learns what the carrier holds, and the console settles it by what that is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from missions.choices import TenderStatus
from missions.models import CarrierCircuit, Shipment, Tender
from missions.models.outbound import OutboundCall
from missions.simulators.carrier import CarrierSimulator
from missions.tendering import reconcile, tasks
from missions.tendering.carrier_client import CarrierClient
from runbooks.models import Incident
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import actions, tender_to

pytestmark = pytest.mark.django_db(transaction=True)


def timed_out_tender(sim: CarrierSimulator, shipment: Shipment, **carrier: Any) -> Tender:
    """A tender whose every attempt timed out at ``sim``: FAILED, its outcome unknown."""
    carrier_row = push_carrier(sim, name="Auto Doubt", api_timeout_seconds=0.2, breaker_failure_threshold=10, **carrier)
    CarrierClient(carrier_row)._token(force=True, correlation="")  # the timeouts hit the submit itself
    sim.faults_set(timeout=True)
    tender = tender_to(shipment, carrier_row)
    sim.faults_set(timeout=False)
    assert tender.status == TenderStatus.FAILED and "timed out" in tender.status_reason
    assert tender.outcome_unknown_since is not None
    return tender


def test_a_pending_tender_the_carrier_holds_is_withdrawn(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=600_000, timeout_hold_seconds=1.0)  # answers "pending" for now
    tender = timed_out_tender(sim, shipment)
    assert reconcile.tenders_in_doubt() == [tender.pk]
    assert tasks.tenders_reconcile.delay().get() == 1
    tender.refresh_from_db()
    assert tender.outcome_unknown_since is None and tender.external_ref
    assert tender.status == TenderStatus.FAILED
    assert actions(subject_type="tender", subject_id=tender.pk)[-3:] == [
        "tender.reconciled",
        "tender.remote_cancel_queued",
        "tender.remote_cancelled",
    ]
    held = sim.tender_by_id(tender.pk)
    assert held is not None and held.status == "cancelled"
    resends = OutboundCall.objects.filter(tender=tender, operation="tender_resend")
    assert set(resends.values_list("idempotency_key", flat=True)) == {str(tender.idempotency_key)}
    assert not Incident.objects.filter(kind="tender_out_of_sync").exists()
    assert reconcile.tenders_in_doubt() == []


def test_a_rejected_tender_needs_nothing(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(policy={"reject": 1.0}, timeout_hold_seconds=1.0)
    tender = timed_out_tender(sim, shipment)
    assert tasks.tenders_reconcile.delay().get() == 1
    tender.refresh_from_db()
    assert tender.outcome_unknown_since is None
    assert actions(subject_type="tender", subject_id=tender.pk)[-1] == "tender.reconciled"
    assert not [r for r in sim.requests if r["path"].endswith("/cancel")]


def test_an_accepted_tender_goes_to_on_call(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(policy={"accept": 1.0}, timeout_hold_seconds=1.0)
    tender = timed_out_tender(sim, shipment)
    assert tasks.tenders_reconcile.delay().get() == 1
    tender.refresh_from_db()
    held = sim.tender_by_id(tender.pk)
    assert held is not None and held.status == "accepted" and tender.external_ref == held.ref
    incident = Incident.objects.get(kind="tender_out_of_sync", carrier=tender.carrier)
    assert held.ref in incident.summary and "accepted" in incident.summary
    assert not [r for r in sim.requests if r["path"].endswith("/cancel")]  # the API cannot undo an acceptance


def test_a_carrier_still_down_is_asked_again_then_left_to_a_person(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(timeout_hold_seconds=1.0)
    tender = timed_out_tender(sim, shipment)
    sim.faults_set(refuse=True)
    assert reconcile.tender_reconcile(tender_id=tender.pk).startswith("still unknown")
    tender.refresh_from_db()
    assert tender.outcome_unknown_since is not None
    with time_machine.travel(timezone.now() + reconcile.GIVE_UP_AFTER + timedelta(minutes=1), tick=False):
        CarrierCircuit.objects.filter(carrier=tender.carrier).update(state="closed", consecutive_failures=0)
        assert reconcile.tender_reconcile(tender_id=tender.pk) == "gave up: ask the carrier"
    tender.refresh_from_db()
    assert tender.outcome_unknown_since is None
    assert actions(subject_type="tender", subject_id=tender.pk)[-1] == "tender.reconcile_gave_up"


def test_an_open_circuit_holds_the_round_back(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(timeout_hold_seconds=1.0)
    tender = timed_out_tender(sim, shipment)
    CarrierCircuit.objects.filter(carrier=tender.carrier).update(state="open")
    assert reconcile.tenders_in_doubt() == []
    assert tasks.tenders_reconcile.delay().get() == 0


def test_a_refused_connection_is_not_in_doubt(make_sim: SimFactory, shipment: Shipment) -> None:
    """Nothing was sent when the carrier refused the connection (nothing listens): the tender simply failed.

    (A connection reset after it was accepted is in doubt: the request may have been written first.)
    """
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Closed", breaker_failure_threshold=10)
    CarrierClient(carrier)._token(force=True, correlation="")
    sim.stop()  # its port now refuses connections
    tender = tender_to(shipment, carrier)
    assert tender.status == TenderStatus.FAILED
    assert tender.outcome_unknown_since is None
    assert reconcile.tenders_in_doubt() == []
