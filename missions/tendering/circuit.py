"""Circuit breaker and bulkhead per carrier: the services that write ``CarrierCircuit``.

State lives in the carrier's ``CarrierCircuit`` row, locked with
``select_for_update`` on every change, so every worker process (on any host)
sees one breaker per carrier.

- closed: calls flow; ``breaker_failure_threshold`` consecutive failures open it.
- open: calls are refused and ``selectors.carrier_fit`` excludes the carrier
  ("circuit open"), so tendering to it pauses; an event and an incident tell
  dispatchers and on-call.
- half-open: after ``breaker_reset_seconds`` exactly one probe call is let
  through; its success closes the circuit, its failure reopens it.

The bulkhead caps calls in flight per carrier at ``max_concurrent_calls``
(the ``in_flight`` counter, changed under the same row lock), so one slow
carrier cannot tie up every worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from missions.choices import CircuitState, TenderStatus
from missions.events import Actor, event_record
from missions.models import CarrierCircuit, Shipment, Tender

log = logging.getLogger(__name__)

BREAKER = Actor.system("circuit-breaker")
# A worker killed mid-call never releases its slot; after this long without
# any change to the row the counter is presumed stale and reset.
STALE_IN_FLIGHT_SECONDS = 120


class CallRefused(Exception):
    """The breaker or the bulkhead refused a call before it was made."""


class CircuitOpenError(CallRefused):
    pass


class BulkheadFullError(CallRefused):
    pass


@dataclass(frozen=True)
class Permit:
    """A granted call slot; ``probe`` is True for the single half-open probe."""

    carrier_id: int
    probe: bool


def _locked(carrier_id: int) -> CarrierCircuit:
    CarrierCircuit.objects.get_or_create(carrier_id=carrier_id)
    return CarrierCircuit.objects.select_for_update().select_related("carrier").get(carrier_id=carrier_id)


def _state_event(circuit: CarrierCircuit, *, action: str, before: str, reason: str = "") -> None:
    carrier = circuit.carrier
    event_record(
        actor=BREAKER,
        action=action,
        subject_type="carrier",
        subject_id=carrier.pk,
        before={"state": before},
        after={"state": circuit.state},
        data={"reason": reason, "consecutive_failures": circuit.consecutive_failures}
        if reason
        else {"consecutive_failures": circuit.consecutive_failures},
        carrier=carrier,
    )
    if circuit.state == CircuitState.OPEN:
        # Put it on the timeline of every shipment waiting on this carrier too.
        shipment_ids = (
            Tender.objects.filter(carrier=carrier, status__in=(TenderStatus.PENDING, TenderStatus.SENT))
            .values_list("shipment_id", flat=True)
            .distinct()[:100]
        )
        for shipment in Shipment.objects.filter(pk__in=list(shipment_ids)):
            event_record(
                actor=BREAKER,
                action="carrier.circuit_opened",
                subject_type="shipment",
                subject_id=shipment.pk,
                data={"carrier": carrier.slug, "reason": reason},
                correlation_id=shipment.correlation_id,
                shipment=shipment,
                carrier=carrier,
            )


def _open(circuit: CarrierCircuit, *, reason: str, action: str) -> None:
    before = circuit.state
    circuit.state = CircuitState.OPEN
    circuit.opened_at = timezone.now()
    circuit.save(
        update_fields=["state", "opened_at", "consecutive_failures", "last_failure_reason", "in_flight", "updated_at"]
    )
    # On-call hears of it through the event: runbooks subscribes and opens the incident.
    _state_event(circuit, action=action, before=before, reason=reason)


@transaction.atomic
def call_acquire(*, carrier_id: int) -> Permit:
    """Take a call slot for a carrier, or raise ``CircuitOpenError`` / ``BulkheadFullError``."""
    circuit = _locked(carrier_id)
    carrier = circuit.carrier
    now = timezone.now()
    if circuit.in_flight and circuit.updated_at < now - timedelta(seconds=STALE_IN_FLIGHT_SECONDS):
        log.warning("stale in-flight counter reset", extra={"carrier": carrier.slug, "in_flight": circuit.in_flight})
        circuit.in_flight = 0
    if circuit.state == CircuitState.OPEN:
        opened_at = circuit.opened_at or now
        if opened_at + timedelta(seconds=carrier.breaker_reset_seconds) > now:
            raise CircuitOpenError(f"circuit open for {carrier.slug}: {circuit.last_failure_reason}")
        before = circuit.state
        circuit.state = CircuitState.HALF_OPEN
        circuit.save(update_fields=["state", "in_flight", "updated_at"])
        _state_event(circuit, action="carrier.circuit_half_open", before=before)
    if circuit.state == CircuitState.HALF_OPEN:
        if circuit.in_flight > 0:
            raise CircuitOpenError(f"circuit half-open for {carrier.slug}: a probe is already in flight")
        circuit.in_flight = 1
        circuit.save(update_fields=["in_flight", "updated_at"])
        return Permit(carrier_id=carrier_id, probe=True)
    if circuit.in_flight >= carrier.max_concurrent_calls:
        raise BulkheadFullError(f"{carrier.slug} already has {circuit.in_flight} calls in flight")
    circuit.in_flight += 1
    circuit.save(update_fields=["in_flight", "updated_at"])
    return Permit(carrier_id=carrier_id, probe=False)


@transaction.atomic
def call_release(*, permit: Permit, ok: bool, reason: str = "") -> CarrierCircuit:
    """Give the slot back and record the call's outcome in the breaker."""
    circuit = _locked(permit.carrier_id)
    carrier = circuit.carrier
    circuit.in_flight = max(0, circuit.in_flight - 1)
    if ok:
        circuit.consecutive_failures = 0
        if circuit.state == CircuitState.HALF_OPEN:
            before = circuit.state
            circuit.state, circuit.opened_at, circuit.last_failure_reason = CircuitState.CLOSED, None, ""
            circuit.save()
            _state_event(circuit, action="carrier.circuit_closed", before=before, reason="half-open probe succeeded")
            return circuit
        circuit.save(update_fields=["in_flight", "consecutive_failures", "updated_at"])
        return circuit
    circuit.consecutive_failures += 1
    circuit.last_failure_reason = reason[:300]
    if circuit.state == CircuitState.HALF_OPEN:
        _open(circuit, reason=reason, action="carrier.circuit_reopened")
    elif circuit.state == CircuitState.CLOSED and circuit.consecutive_failures >= carrier.breaker_failure_threshold:
        _open(circuit, reason=reason, action="carrier.circuit_opened")
    else:
        # Already open (a call that started before it opened): count it, keep the open time.
        circuit.save(update_fields=["in_flight", "consecutive_failures", "last_failure_reason", "updated_at"])
    return circuit


@transaction.atomic
def circuit_reset(*, carrier_id: int, actor: Actor, reason: str) -> CarrierCircuit:
    """On-call closes a carrier's circuit by hand (e.g. the carrier confirmed the fix)."""
    circuit = _locked(carrier_id)
    if circuit.state == CircuitState.CLOSED:
        return circuit
    before = circuit.state
    circuit.state, circuit.opened_at, circuit.consecutive_failures = CircuitState.CLOSED, None, 0
    circuit.last_failure_reason = ""
    circuit.save()
    event_record(
        actor=actor,
        action="carrier.circuit_reset",
        subject_type="carrier",
        subject_id=circuit.carrier_id,
        before={"state": before},
        after={"state": circuit.state},
        data={"reason": reason},
        carrier=circuit.carrier,
    )
    return circuit


def circuits_due_for_probe() -> list[int]:
    """Carriers whose open circuit has waited its reset time (read-only)."""
    now = timezone.now()
    due: list[int] = []
    for circuit in CarrierCircuit.objects.select_related("carrier").filter(state=CircuitState.OPEN):
        opened_at = circuit.opened_at or now
        if opened_at + timedelta(seconds=circuit.carrier.breaker_reset_seconds) <= now:
            due.append(circuit.carrier_id)
    return due
