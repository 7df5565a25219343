"""Fault tests against the real simulator: breaker, bulkhead, retries, idempotency, malformed answers."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from missions.choices import CircuitState, TenderStatus
from missions.models import CarrierCircuit, Offer, Shipment, Tender
from missions.models.outbound import OutboundCall
from missions.selectors import carrier_fit, carrier_ranking
from missions.tendering import carrier_client, circuit, dispatch, tasks
from missions.tendering.carrier_client import CarrierClient, CarrierMalformed, CarrierUnavailable
from runbooks.models import Incident
from tests.factories import ShipmentFactory
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import DISPATCHER, actions, tender_to

pytestmark = pytest.mark.django_db(transaction=True)


def _circuit(carrier_id: int) -> CarrierCircuit:
    return CarrierCircuit.objects.get(carrier_id=carrier_id)


def test_5xx_burst_opens_the_breaker_after_the_threshold(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Flaky", breaker_failure_threshold=3)
    sim.faults_set(error_burst=10)

    tender = tender_to(shipment, carrier)

    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    state = _circuit(carrier.pk)
    assert state.state == CircuitState.OPEN and state.consecutive_failures == 3 and state.in_flight == 0
    submits = OutboundCall.objects.filter(carrier=carrier, operation="tender_submit")
    assert submits.count() == 3 and not submits.filter(ok=True).exists()
    assert set(submits.values_list("status_code", flat=True)) == {503}
    # The same Idempotency-Key on every attempt.
    assert {r["idempotency_key"] for r in sim.requests if r["path"] == "/tenders"} == {str(tender.idempotency_key)}
    # Tendering pauses: the carrier is excluded with the reason, on-call has an incident.
    carrier.refresh_from_db()
    fit = carrier_fit(carrier=carrier, shipment=ShipmentFactory())
    assert not fit.eligible and any(r.startswith("circuit open") for r in fit.reasons)
    incident = Incident.objects.get(kind="carrier_api_down", carrier=carrier)
    assert incident.status == "triggered"
    assert "carrier.circuit_opened" in actions(carrier=carrier, subject_type="carrier")


def test_breaker_opens_below_threshold_only_when_reached(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Flaky", breaker_failure_threshold=5)
    sim.faults_set(error_burst=10)

    tender_to(shipment, carrier)

    state = _circuit(carrier.pk)
    assert state.state == CircuitState.CLOSED and state.consecutive_failures == 3
    assert not Incident.objects.filter(carrier=carrier).exists()


def test_timeouts_open_the_breaker(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(timeout_hold_seconds=2.0)
    carrier = push_carrier(sim, name="Auto Stuck", api_timeout_seconds=0.2, breaker_failure_threshold=3)
    client = CarrierClient(carrier)
    client._token(force=True, correlation="")  # a token first, so the timeouts hit the API call itself
    sim.faults_set(timeout=True)

    tender_to(shipment, carrier)

    assert _circuit(carrier.pk).state == CircuitState.OPEN
    errors = list(
        OutboundCall.objects.filter(carrier=carrier, operation="tender_submit").values_list("error", flat=True)
    )
    assert len(errors) == 3 and all("timed out" in e for e in errors)
    assert sim.tender_count() == 0


def test_refused_connections_count_as_failures(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Gone", breaker_failure_threshold=2)
    sim.faults_set(refuse=True)

    tender = tender_to(shipment, carrier)

    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    assert _circuit(carrier.pk).state == CircuitState.OPEN


def test_failed_send_moves_the_waterfall_on_and_pauses_the_carrier(make_sim: SimFactory, shipment: Shipment) -> None:
    broken_sim = make_sim()
    broken = push_carrier(broken_sim, name="Auto Broken", breaker_failure_threshold=3)
    healthy = push_carrier(make_sim(), name="Auto Healthy")
    broken_sim.faults_set(error_burst=100)

    first = dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER, carrier_ids=[broken.pk, healthy.pk])

    assert first is not None and first.carrier_id == broken.pk
    first.refresh_from_db()
    assert first.status == TenderStatus.FAILED
    assert Tender.objects.get(shipment=shipment, carrier=healthy).status == TenderStatus.ACCEPTED
    # The shipment's timeline shows why the first carrier dropped out.
    timeline = actions(shipment=shipment)
    assert "carrier.circuit_opened" in timeline and "mission.created" in timeline
    # Next shipment: the open circuit keeps the broken carrier out of the ranking.
    other = ShipmentFactory()
    excluded = {f.carrier.pk: f.reasons for f in carrier_ranking(shipment=other) if not f.eligible}
    assert broken.pk in excluded and "circuit open" in excluded[broken.pk][0]


def test_half_open_probe_closes_the_breaker_after_reset(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Flaky", breaker_failure_threshold=3, breaker_reset_seconds=30)
    sim.faults_set(error_burst=3)
    tender_to(shipment, carrier)
    assert _circuit(carrier.pk).state == CircuitState.OPEN

    # Before the reset time nothing is probed and calls are refused without reaching the carrier.
    assert tasks.circuits_probe.delay().get() == 0
    with pytest.raises(CarrierUnavailable):
        CarrierClient(carrier).health()

    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert tasks.circuits_probe.delay().get() == 1

    state = _circuit(carrier.pk)
    assert state.state == CircuitState.CLOSED and state.consecutive_failures == 0
    assert actions(carrier=carrier, subject_type="carrier")[-2:] == [
        "carrier.circuit_half_open",
        "carrier.circuit_closed",
    ]
    carrier.refresh_from_db()
    assert carrier_fit(carrier=carrier, shipment=ShipmentFactory()).eligible
    assert OutboundCall.objects.filter(carrier=carrier, operation="health", ok=True).count() == 1


def test_failed_half_open_probe_reopens(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Down", breaker_failure_threshold=3, breaker_reset_seconds=30)
    sim.faults_set(error_burst=100)
    tender_to(shipment, carrier)

    later = timezone.now() + timedelta(seconds=31)
    with time_machine.travel(later):
        carrier_client.circuits_probe()
        state = _circuit(carrier.pk)
        assert state.state == CircuitState.OPEN
        assert state.opened_at is not None and state.opened_at >= later - timedelta(seconds=1)
    assert "carrier.circuit_reopened" in actions(carrier=carrier)
    # Exactly one probe went out (a half-open circuit lets a single call through).
    assert OutboundCall.objects.filter(carrier=carrier, operation="health").count() == 1
    # Still one incident for the outage, not one per reopening.
    assert Incident.objects.filter(kind="carrier_api_down", carrier=carrier).count() == 1


def test_half_open_lets_a_single_probe_through(make_sim: SimFactory) -> None:
    carrier = push_carrier(make_sim(), name="Auto Probe", breaker_reset_seconds=30)
    CarrierCircuit.objects.create(
        carrier=carrier, state=CircuitState.OPEN, opened_at=timezone.now(), consecutive_failures=3
    )
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        permit = circuit.call_acquire(carrier_id=carrier.pk)
        assert permit.probe
        with pytest.raises(circuit.CircuitOpenError):
            circuit.call_acquire(carrier_id=carrier.pk)
        circuit.call_release(permit=permit, ok=True)
    assert _circuit(carrier.pk).state == CircuitState.CLOSED


def test_bulkhead_refuses_calls_past_the_limit(make_sim: SimFactory) -> None:
    carrier = push_carrier(make_sim(), name="Auto Narrow", max_concurrent_calls=2)
    first = circuit.call_acquire(carrier_id=carrier.pk)
    second = circuit.call_acquire(carrier_id=carrier.pk)
    with pytest.raises(circuit.BulkheadFullError):
        circuit.call_acquire(carrier_id=carrier.pk)
    with pytest.raises(CarrierUnavailable):
        CarrierClient(carrier).health()
    circuit.call_release(permit=first, ok=True)
    third = circuit.call_acquire(carrier_id=carrier.pk)
    circuit.call_release(permit=second, ok=True)
    circuit.call_release(permit=third, ok=True)
    assert _circuit(carrier.pk).in_flight == 0


def test_retries_reuse_the_key_and_never_double_tender(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Flaky", breaker_failure_threshold=5)
    sim.faults_set(error_burst=2)  # two 503s, then the third attempt goes through

    tender = tender_to(shipment, carrier)

    assert tender.status == TenderStatus.ACCEPTED
    submits = [r for r in sim.requests if r["path"] == "/tenders"]
    assert len(submits) == 3 and {r["idempotency_key"] for r in submits} == {str(tender.idempotency_key)}
    assert sim.tender_count() == 1
    assert _circuit(carrier.pk).consecutive_failures == 0  # the success reset the count


def test_resubmitting_the_same_tender_returns_the_same_carrier_tender(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Async")
    tender = tender_to(shipment, carrier)

    # A retry whose first response was lost: same key, same body.
    with CarrierClient(carrier) as client:
        again = client.tender_submit(Tender.objects.select_related("shipment", "carrier").get(pk=tender.pk))

    assert again["ref"] == tender.external_ref
    assert sim.tender_count() == 1


def test_same_key_with_another_body_is_refused_by_the_carrier(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Async")
    tender = tender_to(shipment, carrier)
    token = CarrierClient(carrier)._token(force=False, correlation="")
    from missions.tendering.carrier_client import tender_submit_body

    body = tender_submit_body(Tender.objects.select_related("shipment", "carrier").get(pk=tender.pk))
    body["offered_price_usd"] = "1.00"
    response = httpx.post(
        f"{sim.url}/tenders",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(tender.idempotency_key)},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert sim.tender_count() == 1


def test_malformed_response_is_a_failure_and_never_stored(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Garbage")
    sim.faults_set(malformed=True)

    tender = tender_to(shipment, carrier)

    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    assert tender.external_ref == ""
    assert not Offer.objects.filter(tender=tender).exists()
    call = OutboundCall.objects.get(carrier=carrier, operation="tender_submit")
    assert not call.ok and call.status_code == 200 and "contract" in call.error
    assert _circuit(carrier.pk).consecutive_failures == 1
    with pytest.raises(CarrierMalformed):
        CarrierClient(carrier).health()
    assert _circuit(carrier.pk).consecutive_failures == 2


def test_malformed_answers_open_the_breaker_at_the_threshold(make_sim: SimFactory) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Garbage", breaker_failure_threshold=2)
    sim.faults_set(malformed=True)
    for _ in range(2):
        with pytest.raises(CarrierMalformed):
            CarrierClient(carrier).health()
    assert _circuit(carrier.pk).state == CircuitState.OPEN


def test_expired_token_is_refreshed_once_on_401(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Async")
    tender = tender_to(shipment, carrier)
    sim.state.tokens_revoke()

    assert tasks.tender_poll_status.delay(tender.pk).get() == "sent: answer pending"

    ops = list(OutboundCall.objects.filter(carrier=carrier).order_by("id").values_list("operation", "status_code"))
    assert ops[-3:] == [("tender_status", 401), ("token", 200), ("tender_status", 200)]
    assert _circuit(carrier.pk).consecutive_failures == 0


def test_faults_switch_at_run_time_through_the_admin_endpoint(make_sim: SimFactory) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Admin")
    response = httpx.post(f"{sim.url}/_faults", json={"error_burst": 1, "latency_ms": 5})
    assert response.status_code == 200 and response.json()["error_burst"] == 1
    assert httpx.post(f"{sim.url}/_faults", json={"explode": True}).status_code == 400

    with CarrierClient(carrier) as client:
        assert client.health() == {"status": "ok"}  # the retry after the one 503 succeeds

    health = OutboundCall.objects.filter(carrier=carrier, operation="health").order_by("id")
    calls = list(health.values_list("status_code", flat=True))
    assert calls == [503, 200]
    assert httpx.get(f"{sim.url}/_faults").json()["error_burst"] == 0


def test_wrong_client_secret_is_refused_without_opening_the_breaker(make_sim: SimFactory) -> None:
    from missions.tendering.carrier_client import CarrierClientError

    carrier = push_carrier(make_sim(), name="Auto Locked", api_client_secret="wrong", breaker_failure_threshold=1)
    with pytest.raises(CarrierClientError):
        CarrierClient(carrier).health()
    assert _circuit(carrier.pk).state == CircuitState.CLOSED


def test_full_bulkhead_sends_nothing(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto Narrow", max_concurrent_calls=1)
    held = circuit.call_acquire(carrier_id=carrier.pk)

    tender = tender_to(shipment, carrier)

    # Eager runs cannot wait for a slot, so the tender fails; a worker retries it later instead.
    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED and "bulkhead" in tender.status_reason
    assert sim.tender_count() == 0
    assert _circuit(carrier.pk).state == CircuitState.CLOSED
    circuit.call_release(permit=held, ok=True)
