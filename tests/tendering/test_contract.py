"""docs/carrier-api.yaml is a usable contract: schemathesis drives the simulator with it and every answer conforms."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from missions.tendering.carrier_contract import CONTRACT_PATH, contract
from tests.tendering.conftest import SimFactory


def test_contract_documents_every_operation_the_console_calls() -> None:
    paths = contract()["paths"]
    assert set(paths) >= {
        "/oauth/token",
        "/tenders",
        "/tenders/{ref}",
        "/tenders/{ref}/cancel",
        "/vehicles/{id}/ping",
        "/health",
        "/sandbox/emit",
    }
    assert contract()["openapi"].startswith("3.1")
    for path in ("/tenders", "/tenders/{ref}/cancel"):
        names = [p.get("$ref", "").rsplit("/", 1)[-1] for p in paths[path]["post"]["parameters"]]
        assert "IdempotencyKey" in names


@pytest.mark.slow
def test_schemathesis_finds_every_simulator_answer_in_the_contract(make_sim: SimFactory) -> None:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    sim = make_sim(policy={"accept": 1.0, "reject": 1.0, "counter": 1.0})
    session = requests.Session()
    token = session.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(sim.state.config.client_id, sim.state.config.client_secret),
    ).json()["access_token"]
    schema = schemathesis.openapi.from_path(str(CONTRACT_PATH))
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7
    # The sandbox's emit sends to the URLs it is given: here a port that refuses, never a generated host.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/"

        for operation in operations:

            @given(case=operation.as_strategy(), key=st.uuids())
            @hypothesis_settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def run(case: Any, key: uuid.UUID) -> None:
                if isinstance(case.body, dict):
                    case.body.update({k: dead for k in ("webhook_url", "token_url", "telemetry_url") if k in case.body})
                headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(key)}
                response = case.call(base_url=sim.url, session=session, headers=headers)
                case.validate_response(response, checks=checks)

            run()
