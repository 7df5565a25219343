"""The OpenAPI schema: committed copy matches the code, docs work offline, and it tells the truth.

The truth is checked by schemathesis with every check and every phase (stateful included)
against live servers, daphne and gunicorn (where signed telemetry takes the WSGI fast path),
and by a few fast cases of its earlier findings: the server refuses exactly what the schema
forbids and accepts what it allows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session
from rest_framework.test import APIClient

from missions import services as mission_services
from missions.choices import MissionStatus, TenderStatus
from missions.events import Actor
from missions.evidence import services as evidence_services
from missions.models import Mission, Tender
from missions.partner import services as partner_services
from sla import services as sla_services
from tests.evidence.test_persistence import key_in_environment, mission_with_evidence, noise
from tests.factories import (
    CarrierFactory,
    ContractFactory,
    MissionFactory,
    ShipmentFactory,
    TenderFactory,
    VehicleFactory,
)
from tests.partner.conftest import assert_problem, issue_client
from tests.partner.test_isolation import telemetry_event
from tests.servers import GUNICORN_PROBLEM_WORKER, start_app_server

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
SCHEMATHESIS_CONFIG = Path(settings.BASE_DIR) / "schemathesis.toml"
# Bounded so the run takes a couple of minutes on two cores. A longer run by hand (README, "The API
# schema"): TMS_SCHEMATHESIS_MAX_EXAMPLES=300 TMS_SCHEMATHESIS_SEED=<any> pytest -k schemathesis ...
SCHEMATHESIS_SEED = int(os.environ.get("TMS_SCHEMATHESIS_SEED", "20261206"))
SCHEMATHESIS_MAX_EXAMPLES = int(os.environ.get("TMS_SCHEMATHESIS_MAX_EXAMPLES", "20"))


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
        assert asset.startswith(("/static/vendor/swagger-ui/", "/static/css/")), asset
        assert (Path(settings.BASE_DIR) / asset.removeprefix("/")).is_file(), asset
    assert "validatorUrl" in html and "https://" not in html


# --- What schemathesis found before the schema told the truth, as fast cases -----------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "page_size=null",
        "page_size=0",
        "page_size=",
        "page_size=5&page_size=6",
        "page=0",
        "page=last",
        "page=1.0",
        "status=",
        "status=bogus",
    ],
)
def test_a_list_refuses_a_query_the_schema_forbids(api_a: APIClient, query: str) -> None:
    body = assert_problem(api_a.get(f"/api/v1/tenders?{query}"), 400, "validation-error")
    assert body["errors"][0]["parameter"] == query.split("=")[0]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=%EF%BC%95", "limit=+5", "after=-1", "after="])
def test_the_event_log_refuses_a_cursor_or_limit_out_of_bounds(api_a: APIClient, query: str) -> None:
    assert_problem(api_a.get(f"/api/v1/events?{query}"), 400, "validation-error")


@pytest.mark.django_db
def test_the_documented_bounds_are_the_enforced_ones(api_a: APIClient) -> None:
    schema = yaml.safe_load(COMMITTED.read_text())
    events = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert (events["limit"]["minimum"], events["limit"]["maximum"]) == (1, 1000)
    assert api_a.get("/api/v1/events?limit=1000&after=0").status_code == 200
    tenders = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/tenders"]["get"]["parameters"]}
    assert tenders["page_size"]["minimum"] == 1 and "maximum" not in tenders["page_size"]  # above the cap: cut
    assert set(tenders["status"]["enum"]) == set(TenderStatus.values)
    assert api_a.get("/api/v1/tenders?page_size=1000&page=1&status=sent").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"kind": "counter", "price_usd": 1500},  # a number: the schema says a decimal string
        {"kind": "counter", "price_usd": "0.00"},
        {"kind": "counter", "price_usd": "1e3"},
        {"kind": "counter", "price_usd": "-5.00"},
        {"kind": "accept", "price_usd": ""},  # DRF would read it as null
        {"kind": "accept", "price_usd": " "},
        {"kind": "counter"},  # a counter names its price
        {"kind": "accept", "eta": "2026-12-01"},  # a date is not a date-time
        {"kind": "accept", "eta": "2026-12-01T10:00:00"},  # no offset
        {"kind": "accept", "reason": 5},
        {"kind": "accept", "autonomy_mode": None},
    ],
)
def test_an_offer_the_schema_forbids_is_400(
    api_a: APIClient, tender_a: Tender, post_json: Callable[..., Any], body: dict[str, Any]
) -> None:
    assert_problem(post_json(api_a, f"/api/v1/tenders/{tender_a.pk}/offers", body), 400, "validation-error")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "override",
    [
        {"mission_id": "1"},
        {"mission_id": True},
        {"event_id": "e3e70682c2091caca29f6fbed82c07cd"},
        {"position": {"lat": "32.5", "lon": -96.5}},
        {"position": {"lat": 32.5, "lon": -96.5, "altitude_m": 3}},
        {"health": {"critical_sensors_ok": "true"}},
        {"schema_version": 1},
        {"firmware": "1.2"},
    ],
)
def test_a_telemetry_event_the_schema_forbids_is_400(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any], override: dict[str, Any]
) -> None:
    event = telemetry_event(mission_a, **override)
    assert_problem(post_json(api_a, "/api/v1/telemetry", event), 400, "validation-error")


@pytest.mark.django_db
def test_a_telemetry_event_at_the_schema_edges_is_accepted(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    event = telemetry_event(
        mission_a,
        position={"lat": 90, "lon": -180, "speed_kph": 0, "heading_deg": 360, "accuracy_m": None},
        health={"ecu_errors": None, "fuel_pct": 100},
    )
    event["ts"] = event["ts"].replace("+00:00", "z").replace("T", "t")  # RFC 3339 admits lower case
    response = post_json(api_a, "/api/v1/telemetry", event)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1


@pytest.mark.django_db
def test_an_instant_the_server_cannot_hold_is_a_422_not_a_500(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    body = {"kind": "lost_comms", "occurred_at": "0001-01-01T00:00:00+00:01"}
    problem = assert_problem(post_json(api_a, f"/api/v1/missions/{mission_a.pk}/exceptions", body), 422)
    assert problem["errors"][0]["pointer"] == "/occurred_at"


# --- schemathesis: every check, every phase, against daphne and gunicorn ---------------------------


def _seed_partner() -> tuple[Any, str]:
    """A carrier with open tenders, missions in several states, signed evidence, SLA figures and a webhook secret."""
    actor = Actor.system("schema-test")
    carrier = CarrierFactory(slug="fuzz-carrier")
    ContractFactory(carrier=carrier)
    vehicle = VehicleFactory(carrier=carrier, external_id="TRK-FUZZ")
    for _ in range(4):
        TenderFactory(carrier=carrier, status=TenderStatus.SENT, shipment=ShipmentFactory())
    for _ in range(4):
        MissionFactory(carrier=carrier, vehicle=vehicle)
    en_route = MissionFactory(carrier=carrier, vehicle=vehicle)
    mission_services.mission_transition(mission_id=en_route.pk, to_status=MissionStatus.EN_ROUTE, actor=actor)
    noise(2)
    mission_with_evidence(carrier=carrier, vehicle=vehicle)
    evidence_services.checkpoint_issue()
    sla_services.sla_evaluate(carrier_id=carrier.pk)
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=actor).secret
    return issue_client(carrier), secret


@pytest.mark.slow
@pytest.mark.server_process
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server_name", ["daphne", "gunicorn"])
def test_schemathesis_every_check_and_the_stateful_phase_find_nothing(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key_in_environment(monkeypatch)  # the server signs evidence with the same key as this process
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on loopback
    issued, webhook_secret = _seed_partner()
    # The fuzzer sends many deliberately wrong credentials: the limits and the guard on guessing
    # (tested on their own) would answer most of its cases with 429 and hide what is under test.
    unlimited = {
        "API_RATE_LIMIT": "1000000/min",
        "AUTH_GUARD_BEARER_PER_ADDRESS": "off",
        "AUTH_GUARD_PER_ADDRESS": "off",
    }
    server = start_app_server(
        server_name, log_path=tmp_path / "server.log", env=unlimited, gunicorn_options=GUNICORN_PROBLEM_WORKER
    )
    report_path = tmp_path / "schemathesis.json"
    try:
        session = OAuth2Session(client=BackendApplicationClient(client_id=issued.client_id))
        token = session.fetch_token(
            token_url=f"{server.url}/oauth2/token", client_id=issued.client_id, client_secret=issued.client_secret
        )
        assert set(token["scope"]) >= {"tender:write", "missions:write", "telemetry:write", "exceptions:write"}
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(SCHEMATHESIS_CONFIG),
            "--no-color",
            "run",
            str(COMMITTED),
            "--url",
            server.url,
            "--header",
            f"Authorization: Bearer {token['access_token']}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            str(SCHEMATHESIS_SEED),
            "--max-examples",
            str(SCHEMATHESIS_MAX_EXAMPLES),
            # One worker: the embedded SQLite database serialises writers anyway, and with two
            # schemathesis 4.32.5 sometimes stops on a thread-safety error inside hypothesis.
            "--workers",
            "1",
            "--report",
            "json",
            "--report-json-path",
            str(report_path),
        ]
        environment = {
            **os.environ,
            "TMS_FUZZ_CARRIER_SLUG": "fuzz-carrier",
            "TMS_FUZZ_WEBHOOK_SECRET": webhook_secret,
        }
        run = subprocess.run(
            command, cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True, timeout=1200
        )
    finally:
        server.stop()
    output = run.stdout + run.stderr
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    operations = report["operations"]
    cases = report["test_cases"]
    failures = sum(int(failure["count"]) for failure in report["failures"])
    errors = len(report["errors"])
    with capsys.disabled():  # printed whether the test passes or not, so CI's log carries the figures
        print(
            f"\nschemathesis {report['schemathesis_version']} against {server_name} (seed {report['seed']}): "
            f"{operations['tested']}/{operations['total']} operations, {cases['generated']} cases, "
            f"{failures} failures, {errors} errors, phases "
            + ", ".join(f"{name} {phase['status']}" for name, phase in report["phases"].items())
        )
    assert report["complete"] and report["stop_reason"] == "completed", output
    assert operations["tested"] == operations["total"] >= 18, output
    assert all(phase["status"] in ("success", "skip") for phase in report["phases"].values()), output
    assert report["phases"]["stateful"]["status"] == "success", output
    assert (failures, errors) == (0, 0), output + "\n" + server.log_tail()
    assert run.returncode == 0, output
