"""The OpenAPI schema: committed copy matches the code, docs work offline, schemathesis finds no fault."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from missions.choices import TenderStatus
from missions.events import Actor
from missions.partner import services as partner_services
from tests.factories import CarrierFactory, MissionFactory, TenderFactory, VehicleFactory
from tests.partner.conftest import fetch_token, issue_client

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"


def test_committed_schema_matches_the_code(tmp_path: Path) -> None:
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    assert generated.read_text() == COMMITTED.read_text(), (
        "docs/openapi.yaml is stale: run `python manage.py spectacular --file docs/openapi.yaml "
        "--validate --fail-on-warn` and commit it"
    )


@pytest.mark.django_db
def test_schema_endpoint_serves_the_schema(client: Client) -> None:
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/tenders/{id}/offers" in response.content


@pytest.mark.django_db
def test_docs_page_loads_only_local_assets(client: Client) -> None:
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/static/vendor/swagger-ui/"), asset
        assert (Path(settings.BASE_DIR) / asset.removeprefix("/")).is_file(), asset
    assert "validatorUrl" in html and "https://" not in html


def _problem_check(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])
        value = content_type[0] if isinstance(content_type, list) else content_type
        assert value.startswith("application/problem+json"), (response.status_code, value)
    return None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error_and_every_answer_conforms(live_server: Any, settings: Any) -> None:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    settings.API_RATE_LIMIT = "100000/min"
    carrier = CarrierFactory(slug="fuzz")
    vehicle = VehicleFactory(carrier=carrier)
    TenderFactory(carrier=carrier, status=TenderStatus.SENT)
    MissionFactory(carrier=carrier, vehicle=vehicle)
    partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("t"))
    token = fetch_token(issue_client(carrier))["access_token"]
    schema = schemathesis.openapi.from_path(str(COMMITTED))
    session = requests.Session()
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy(), key=st.uuids())
        @hypothesis_settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any, key: uuid.UUID) -> None:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(key)}
            response = case.call(base_url=live_server.url, session=session, headers=headers)
            case.validate_response(response, checks=checks, additional_checks=[_problem_check])

        run()
