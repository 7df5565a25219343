"""Chaos: the carrier API slow, then blackholed, then back, on real sockets through the fault proxy.

The carrier simulator sits behind a ``FaultProxy`` and the carrier's
``api_base_url`` points at the proxy, so the console's own client, breaker and
tasks meet real network faults: requests that time out but still reach the
carrier late, connections that are accepted and never answered, and the
recovery. Thresholds are small (timeout 0.4 s, three failures, reset 3 s) so
the whole outage runs in real time in about ten seconds.

The tender whose every attempt timed out failed here, but the carrier got the
attempts late and holds it (accepted, by the simulator's policy). Once the
circuit is closed, the reconcile round (``missions.tenders_reconcile``) resends
it under its own key and learns what the carrier holds; an accepted tender
cannot be withdrawn through the API, so on-call is told, with the carrier's
reference (tests/tendering/test_reconcile.py covers the other answers).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from missions.choices import CircuitState, TenderStatus
from missions.models import Carrier, CarrierCircuit, Tender
from missions.models.outbound import OutboundCall
from missions.simulators.carrier import CarrierSimulator, SimConfig
from missions.simulators.faultproxy import Direction, FaultProxy
from missions.tendering import tasks
from missions.tendering.carrier_client import CarrierClient, CarrierUnavailable
from runbooks.models import Incident
from tests.chaos.proxy import ProxyFactory
from tests.factories import ShipmentFactory
from tests.tendering.conftest import _fast_retries, push_carrier  # noqa: F401  (the autouse fixture: retries without sleeping)
from tests.tendering.helpers import actions, tender_to
from tms_console.domain import DomainError

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TIMEOUT_SECONDS = 0.4
SLOW_SECONDS = 0.6  # each way: a round trip takes three times the client's timeout
FAILURE_THRESHOLD = 3
RESET_SECONDS = 3
PATIENT_SECONDS = 15.0  # an upper bound for things that must happen, never asserted as a timing


@pytest.fixture
def sim() -> Iterator[CarrierSimulator]:
    simulator = CarrierSimulator(SimConfig(policy={"accept": 1.0}, seed=7, vehicles=["SIM-001", "SIM-002"])).start()
    yield simulator
    simulator.stop()


def _circuit(carrier: Carrier) -> CarrierCircuit:
    return CarrierCircuit.objects.get(carrier=carrier)


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {PATIENT_SECONDS} s")
        time.sleep(0.05)


def _wait_out_the_reset(carrier: Carrier) -> None:
    opened_at = _circuit(carrier).opened_at
    assert opened_at is not None
    wait = (opened_at + timedelta(seconds=RESET_SECONDS) - timezone.now()).total_seconds()
    time.sleep(max(0.0, wait) + 0.1)


def _submits_of(sim: CarrierSimulator, tender: Tender) -> list[dict[str, Any]]:
    return [r for r in sim.requests if r["path"] == "/tenders" and r["idempotency_key"] == str(tender.idempotency_key)]


def _books_by_shipment(sim: CarrierSimulator) -> Counter[str]:
    with sim.state.lock:
        return Counter(t.request["shipment"]["reference"] for t in sim.state.tenders.values())


def test_slow_then_blackholed_then_back(sim: CarrierSimulator, fault_proxy: ProxyFactory) -> None:
    proxy: FaultProxy = fault_proxy("127.0.0.1", sim.port)
    carrier = push_carrier(
        sim,
        name="Auto Chaos",
        api_base_url=proxy.url,
        api_timeout_seconds=TIMEOUT_SECONDS,
        breaker_failure_threshold=FAILURE_THRESHOLD,
        breaker_reset_seconds=RESET_SECONDS,
    )
    shipments = [ShipmentFactory(target_rate_usd=Decimal("1450.00")) for _ in range(4)]
    before, slow, blackholed, after = shipments

    # Healthy through the proxy (and the OAuth token is cached from here on).
    assert tender_to(before, carrier).status == TenderStatus.ACCEPTED

    # 1. Slow: every attempt times out, the breaker opens at the threshold and the tender fails.
    proxy.set_latency(SLOW_SECONDS, direction=Direction.BOTH)
    timed_out = tender_to(slow, carrier)
    timed_out.refresh_from_db()
    assert timed_out.status == TenderStatus.FAILED and "timed out" in timed_out.status_reason
    state = _circuit(carrier)
    assert state.state == CircuitState.OPEN and state.consecutive_failures == FAILURE_THRESHOLD
    assert state.in_flight == 0
    attempts = OutboundCall.objects.filter(tender=timed_out, operation="tender_submit")
    assert attempts.count() == FAILURE_THRESHOLD and not attempts.filter(ok=True).exists()
    assert all("timed out" in error for error in attempts.values_list("error", flat=True))
    # Every retry went out under the tender's own Idempotency-Key ...
    assert set(attempts.values_list("idempotency_key", flat=True)) == {str(timed_out.idempotency_key)}
    assert Incident.objects.filter(kind="carrier_api_down", carrier=carrier).count() == 1
    # ... and each late copy still reached the carrier, which booked the tender once (checked below).
    _wait_for("the late submits", lambda: len(_submits_of(sim, timed_out)) == FAILURE_THRESHOLD)

    # 2. Blackholed while open: tendering to the carrier pauses and calls are refused before
    # they reach the network.
    proxy.heal()
    proxy.set_blackhole()
    connections_before = proxy.stats().connections_accepted
    with pytest.raises(DomainError, match="circuit open"):
        tender_to(blackholed, carrier)
    assert not Tender.objects.filter(shipment=blackholed).exists()
    with pytest.raises(CarrierUnavailable):
        CarrierClient(carrier).health()
    assert tasks.circuits_probe.delay().get() == 0  # not due before the reset time
    assert proxy.stats().connections_accepted == connections_before
    assert _circuit(carrier).state == CircuitState.OPEN

    # After the reset time the half-open probe goes into the blackhole, times out and reopens.
    _wait_out_the_reset(carrier)
    assert tasks.circuits_probe.delay().get() == 1
    assert _circuit(carrier).state == CircuitState.OPEN
    assert actions(carrier=carrier, subject_type="carrier")[-2:] == [
        "carrier.circuit_half_open",
        "carrier.circuit_reopened",
    ]
    probe = OutboundCall.objects.get(carrier=carrier, operation="health")  # one probe, not one per retry
    assert not probe.ok and "timed out" in probe.error
    stats = proxy.stats()
    assert stats.connections_accepted == connections_before + 1 and stats.bytes_blackholed > 0
    assert not [r for r in sim.requests if r["path"] == "/health"]  # the carrier never heard of it

    # 3. Back: after the reset time the probe passes and closes the circuit.
    proxy.heal()
    _wait_out_the_reset(carrier)
    assert tasks.circuits_probe.delay().get() == 1
    state = _circuit(carrier)
    assert state.state == CircuitState.CLOSED and state.consecutive_failures == 0 and state.in_flight == 0
    assert actions(carrier=carrier, subject_type="carrier")[-2:] == [
        "carrier.circuit_half_open",
        "carrier.circuit_closed",
    ]

    # The tender that timed out is in doubt until the carrier is asked again; now that it answers, the
    # resend (same key) names the tender it holds. It accepted it, which no API call can undo: on-call
    # gets the carrier's "tenders out of sync" incident with the carrier's reference and truck.
    timed_out.refresh_from_db()
    assert timed_out.outcome_unknown_since is not None
    held = sim.tender_by_id(timed_out.pk)
    assert held is not None and held.status == "accepted"
    assert tasks.tenders_reconcile.delay().get() == 1
    timed_out.refresh_from_db()
    assert timed_out.outcome_unknown_since is None and timed_out.external_ref == held.ref
    assert timed_out.status == TenderStatus.FAILED
    assert actions(subject_type="tender", subject_id=timed_out.pk)[-1] == "tender.reconciled"
    incident = Incident.objects.get(kind="tender_out_of_sync", carrier=carrier)
    assert held.ref in incident.summary and "accepted" in incident.summary
    # The resend carried the same key, and the carrier answered it from its books (no second tender).
    assert {r["idempotency_key"] for r in _submits_of(sim, timed_out)} == {str(timed_out.idempotency_key)}
    assert tasks.tenders_reconcile.delay().get() == 0  # settled

    # Tendering resumes: the shipment refused during the outage, and a new one.
    assert tender_to(blackholed, carrier).status == TenderStatus.ACCEPTED
    assert tender_to(after, carrier).status == TenderStatus.ACCEPTED

    # None duplicated: one tender per shipment in the carrier's books, each under one key.
    assert _books_by_shipment(sim) == Counter({s.reference: 1 for s in shipments})
    for tender in Tender.objects.filter(carrier=carrier):
        submits = _submits_of(sim, tender)
        assert submits and all(r["idempotency_key"] == str(tender.idempotency_key) for r in submits)
        booked = sim.tender_by_id(tender.pk)
        assert booked is not None and booked.request["shipment"]["reference"] == tender.shipment.reference
    # ... and in the console: one tender row per send, at most one accepted per shipment.
    keys = list(Tender.objects.filter(carrier=carrier).values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys)) == len(shipments)
    accepted = Counter(
        Tender.objects.filter(carrier=carrier, status=TenderStatus.ACCEPTED).values_list("shipment_id", flat=True)
    )
    assert accepted == Counter({before.pk: 1, blackholed.pk: 1, after.pk: 1})
    assert all(Tender.objects.filter(shipment=s).count() == 1 for s in shipments)
