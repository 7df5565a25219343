"""The breaker and bulkhead are shared by every worker: concurrent callers see one counter."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from missions.choices import CircuitState
from missions.models import CarrierCircuit
from missions.tendering import circuit
from tests.conftest import require_service
from tests.factories import CarrierFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


def _race(n: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:  # collected and asserted on below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_bulkhead_admits_exactly_max_concurrent_calls_across_connections() -> None:
    require_service("PostgreSQL", settings.IS_POSTGRES)
    carrier = CarrierFactory(max_concurrent_calls=3)

    results = _race(8, lambda: circuit.call_acquire(carrier_id=carrier.pk))

    permits = [r for r in results if isinstance(r, circuit.Permit)]
    refused = [r for r in results if isinstance(r, circuit.BulkheadFullError)]
    assert len(permits) == 3 and len(refused) == 5
    assert CarrierCircuit.objects.get(carrier=carrier).in_flight == 3


def test_concurrent_failures_open_the_circuit_once() -> None:
    require_service("PostgreSQL", settings.IS_POSTGRES)
    carrier = CarrierFactory(max_concurrent_calls=10, breaker_failure_threshold=3)
    permits = [circuit.call_acquire(carrier_id=carrier.pk) for _ in range(6)]
    it = iter(permits)
    lock = threading.Lock()

    def fail() -> CarrierCircuit:
        with lock:
            permit = next(it)
        return circuit.call_release(permit=permit, ok=False, reason="HTTP 503")

    _race(6, fail)

    state = CarrierCircuit.objects.get(carrier=carrier)
    assert state.state == CircuitState.OPEN and state.consecutive_failures == 6 and state.in_flight == 0
    from missions.models import AuditEvent

    assert AuditEvent.objects.filter(carrier=carrier, action="carrier.circuit_opened").count() == 1
