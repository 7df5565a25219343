"""Consumer side of the console's pact with carrier APIs: the real ``CarrierClient`` against Pact's mock server.

Each test builds the interactions of one call (the token request and the call), points a carrier's
``api_base_url`` at the mock server, makes the call with ``CarrierClient`` as the tendering tasks do, and
checks what the client made of the answer. The mock server fails the test if the client's requests do
not match the interactions or one of them was never made; the client itself fails on an answer that
breaks docs/carrier-api.yaml, so every response example is also held to the OpenAPI contract.

The pact file: tests/contract/pacts/tms-console-carrier-api.json, committed (there is no broker). Each test
writes the pact of its own interactions into a temporary directory and checks they are the committed ones;
``test_carrier_pact_file_is_what_the_consumer_tests_write`` writes every interaction and compares the whole
file. A run writes nothing into the tree; ``PACT_UPDATE=1`` rewrites the file after a deliberate change
(see tests/contract/pactfiles.py). tests/contract/test_carrier_provider.py verifies the committed file
against the carrier simulator.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from pact import Pact

from missions.models import Carrier, OutboundCall, Tender
from missions.tendering.carrier_client import (
    CarrierClient,
    CarrierClientError,
    CarrierGone,
    CarrierNotFound,
    CarrierServerError,
)
from tests.contract import carrier_pact as cp
from tests.contract.pactfiles import interactions_check, pact_file_check
from tests.factories import CarrierFactory, ShipmentFactory, TenderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_attempt(settings: Any) -> Iterator[None]:
    # One attempt per call: a retried 503 would be a second request the pact does not describe.
    settings.CARRIER_RETRY_ATTEMPTS = 1
    settings.PARTNER_BASE_URL = "https://tms.example"
    cache.clear()  # no token cached from another test: every call starts with the token request
    yield
    cache.clear()


@pytest.fixture
def tender() -> Tender:
    carrier = CarrierFactory(
        slug="pact-carrier",
        api_base_url="http://127.0.0.1:9",  # replaced by the mock server's address in each test
        api_client_id=cp.CLIENT_ID,
        api_client_secret=cp.CLIENT_SECRET,
        api_timeout_seconds=5,
    )
    shipment = ShipmentFactory(
        origin_region="TX",
        destination_region="TX",
        pickup_window_start=datetime(2026, 12, 7, 8, tzinfo=UTC),
        pickup_window_end=datetime(2026, 12, 7, 10, tzinfo=UTC),
        delivery_window_start=datetime(2026, 12, 7, 13, tzinfo=UTC),
        delivery_window_end=datetime(2026, 12, 7, 16, tzinfo=UTC),
        max_autonomy_level=4,
        preferred_route="I-45-S",
    )
    return TenderFactory(shipment=shipment, carrier=carrier, offered_price_usd=Decimal("1400.00"), external_ref=cp.REF)


def run_against_mock(
    tmp_path: Path,
    tender: Tender,
    builders: tuple[Callable[[Pact], None], ...],
    call: Callable[[CarrierClient], Any],
) -> Any:
    """Serve the interactions, make ``call`` with a client of the tender's carrier, check the pact; its result."""
    pact = cp.carrier_pact(*builders)
    with pact.serve(addr="127.0.0.1") as server:
        Carrier.objects.filter(pk=tender.carrier_id).update(api_base_url=str(server.url))
        carrier = Carrier.objects.get(pk=tender.carrier_id)
        with CarrierClient(carrier) as client:
            try:
                result = call(client)
            except Exception as exc:  # the answer is part of what the test checks
                result = exc
    interactions_check(pact, tmp_path / "pact")
    return result


def test_token_then_tender_submit_with_idempotency_key(tmp_path: Path, tender: Tender) -> None:
    answer = run_against_mock(tmp_path, tender, (cp.token_issue, cp.tender_submit), lambda c: c.tender_submit(tender))
    assert answer["status"] == "accepted"
    assert answer["offer"]["kind"] == "accept"
    assert answer["offer"]["vehicle_id"] == cp.VEHICLE_ID
    calls = list(OutboundCall.objects.filter(tender=tender).values_list("operation", "status_code", "ok"))
    assert calls == [("tender_submit", 201, True)]
    submit = OutboundCall.objects.get(tender=tender)
    assert submit.idempotency_key == str(tender.idempotency_key)


def test_a_resend_gets_the_carriers_earlier_answer(tmp_path: Path, tender: Tender) -> None:
    answer = run_against_mock(tmp_path, tender, (cp.token_issue, cp.tender_resend), lambda c: c.tender_resend(tender))
    assert answer["status"] == "pending"
    assert answer["offer"] is None


@pytest.mark.parametrize(
    ("builder", "status", "kind"),
    [(cp.status_accepted, "accepted", "accept"), (cp.status_countered, "countered", "counter")],
)
def test_status_poll_of_an_answered_tender(
    tmp_path: Path, tender: Tender, builder: Callable[[Pact], None], status: str, kind: str
) -> None:
    answer = run_against_mock(tmp_path, tender, (cp.token_issue, builder), lambda c: c.tender_status(tender))
    assert (answer["status"], answer["offer"]["kind"]) == (status, kind)
    if kind == "counter":
        assert Decimal(answer["offer"]["price_usd"]) > tender.offered_price_usd


def test_status_poll_of_a_pending_tender(tmp_path: Path, tender: Tender) -> None:
    answer = run_against_mock(tmp_path, tender, (cp.token_issue, cp.status_pending), lambda c: c.tender_status(tender))
    assert answer["status"] == "pending"


def test_an_unknown_tender_is_not_found(tmp_path: Path, tender: Tender) -> None:
    tender.external_ref = cp.UNKNOWN_REF
    error = run_against_mock(tmp_path, tender, (cp.token_issue, cp.status_unknown), lambda c: c.tender_status(tender))
    assert isinstance(error, CarrierNotFound)
    assert error.status_code == 404


def test_a_withdrawn_tender_is_gone(tmp_path: Path, tender: Tender) -> None:
    error = run_against_mock(tmp_path, tender, (cp.token_issue, cp.status_withdrawn), lambda c: c.tender_status(tender))
    assert isinstance(error, CarrierGone)
    assert error.status_code == 410


def test_cancel_of_a_pending_tender(tmp_path: Path, tender: Tender) -> None:
    answer = run_against_mock(
        tmp_path,
        tender,
        (cp.token_issue, cp.cancel_pending),
        lambda c: c.tender_cancel(tender, reason="shipment cancelled by the shipper"),
    )
    assert answer["status"] == "cancelled"


def test_cancel_of_an_accepted_tender_is_a_conflict(tmp_path: Path, tender: Tender) -> None:
    error = run_against_mock(
        tmp_path,
        tender,
        (cp.token_issue, cp.cancel_accepted),
        lambda c: c.tender_cancel(tender, reason="shipment cancelled by the shipper"),
    )
    assert type(error) is CarrierClientError
    assert error.status_code == 409
    assert "Conflict" in str(error) or "HTTP 409" in str(error)


def test_a_refused_client_secret(tmp_path: Path, tender: Tender) -> None:
    Carrier.objects.filter(pk=tender.carrier_id).update(api_client_secret="wrong-secret")
    tender.carrier.refresh_from_db()
    error = run_against_mock(tmp_path, tender, (cp.token_refused,), lambda c: c.health())
    assert isinstance(error, CarrierClientError)
    assert error.status_code == 401
    assert "invalid_client" in str(error)


def test_vehicle_ping(tmp_path: Path, tender: Tender) -> None:
    answer = run_against_mock(
        tmp_path, tender, (cp.token_issue, cp.vehicle_ping), lambda c: c.vehicle_ping(cp.VEHICLE_ID)
    )
    assert answer["vehicle_id"] == cp.VEHICLE_ID
    assert answer["safe_hold"] is False
    assert set(answer["position"]) >= {"lat", "lon", "recorded_at"}


def test_health(tmp_path: Path, tender: Tender) -> None:
    assert run_against_mock(tmp_path, tender, (cp.token_issue, cp.health), lambda c: c.health()) == {"status": "ok"}


def test_an_overloaded_carrier_is_a_retryable_server_error(tmp_path: Path, tender: Tender) -> None:
    error = run_against_mock(tmp_path, tender, (cp.token_issue, cp.health_overloaded), lambda c: c.health())
    assert isinstance(error, CarrierServerError)
    assert error.retryable
    assert error.status_code == 503


def test_carrier_pact_file_is_what_the_consumer_tests_write(tmp_path: Path) -> None:
    path = pact_file_check(cp.carrier_pact(*cp.INTERACTIONS), tmp_path / "pact")
    assert path.name == "tms-console-carrier-api.json"
    # Every interaction of the file is exercised against the mock server by one of this module's tests.
    tests = [f for name, f in globals().items() if name.startswith("test_") and f is not CURRENT_TEST]
    used = {name for f in tests for name in re.findall(r"\bcp\.([a-z_]+)\b", inspect.getsource(f))}
    missing = [build.__name__ for build in cp.INTERACTIONS if build.__name__ not in used]
    assert not missing, f"interactions in the pact that no consumer test exercises: {missing}"


CURRENT_TEST = test_carrier_pact_file_is_what_the_consumer_tests_write
