"""schemathesis' stateful mode against the carrier simulator, from docs/carrier-api.yaml and its links.

The contract's OpenAPI links say that the ``ref`` in a submit's (or a cancel's) answer names the tender in
``GET /tenders/{ref}`` and ``POST /tenders/{ref}/cancel``. schemathesis builds a Hypothesis state machine
from them and runs bounded sequences (submit, then poll or cancel the tender it got back, then poll or
cancel again...) against a live simulator, checking every answer against the contract: status code,
media type and body schema, and no 5xx. tests/tendering/test_contract.py drives each operation alone;
this one reaches the states only a sequence gets to (a cancelled tender polled, a tender cancelled twice).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from missions.simulators.carrier import CarrierSimulator, SimConfig
from missions.tendering.carrier_contract import CONTRACT_PATH

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def sim() -> Iterator[CarrierSimulator]:
    # Every answer kind, in the response: a sequence meets accepted, rejected and countered tenders.
    config = SimConfig(policy={"accept": 1.0, "reject": 1.0, "counter": 1.0}, seed=11, timeout_hold_seconds=3.0)
    simulator = CarrierSimulator(config).start()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_the_contract_links_submit_to_poll_and_cancel() -> None:
    document = schemathesis.openapi.from_path(str(CONTRACT_PATH)).raw_schema
    for status in ("200", "201"):
        submit = document["paths"]["/tenders"]["post"]["responses"][status]["links"]
        targets = {
            document["components"]["links"][link["$ref"].rsplit("/", 1)[-1]]["operationId"] for link in submit.values()
        }
        assert targets == {"tenderStatus", "tenderCancel"}
    cancel = document["paths"]["/tenders/{ref}/cancel"]["post"]["responses"]["200"]["links"]
    assert {link["$ref"] for link in cancel.values()} == {"#/components/links/TenderStatus"}
    assert {link["parameters"]["ref"] for link in document["components"]["links"].values()} == {"$response.body#/ref"}


def test_stateful_sequences_against_the_simulator(sim: CarrierSimulator) -> None:
    session = requests.Session()
    config = sim.state.config
    token = session.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(config.client_id, config.client_secret),
        timeout=5,
    ).json()["access_token"]
    schema = schemathesis.openapi.from_path(str(CONTRACT_PATH))
    calls: list[tuple[str, str, int]] = []

    class CarrierMachine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"}
            if case.method.upper() == "POST" and case.path != "/oauth/token":
                headers["Idempotency-Key"] = str(uuid.uuid4())
            return {"base_url": sim.url, "session": session, "headers": headers}

        def after_call(self, response: Any, case: Any) -> None:
            calls.append((case.method.upper(), case.path, response.status_code))

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    try:
        CarrierMachine.run(
            settings=hypothesis_settings(
                max_examples=15,
                stateful_step_count=5,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
        )
    finally:
        session.close()  # no kept-alive connection left for the simulator's shutdown
    # The sequences followed the links: a tender the simulator created was polled and cancelled by its ref.
    answered = {(method, path, status) for method, path, status in calls}
    assert ("POST", "/tenders", 201) in answered, sorted(answered)
    assert ("GET", "/tenders/{ref}", 200) in answered, sorted(answered)
    assert answered & {("POST", "/tenders/{ref}/cancel", 200), ("POST", "/tenders/{ref}/cancel", 409)}, sorted(answered)
    assert sim.tender_count() > 0
