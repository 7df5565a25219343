"""Fixtures for the partner API tests: carriers with OAuth clients, tokens, signed clients, live servers.

``app_server``: the site under daphne and under gunicorn (``tests.servers``), for
tests about HTTP behaviour; a module overrides ``app_server_env`` to give the
server processes extra settings; ``live_app`` is the same servers under the name the
request-body tests use.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from missions.choices import TenderStatus
from missions.events import Actor
from missions.models import Carrier, Mission, Tender
from missions.partner import services as partner_services
from missions.partner.services import IssuedClient
from tests.factories import MissionFactory, ShipmentFactory, TenderFactory, VehicleFactory
from tests.servers import SERVER_KINDS, AppServer, remove_directory, sqlite_test_database_to_file, start_app_server

ALL_SCOPES = (
    "tender:read tender:write missions:read missions:write telemetry:write telemetry:read exceptions:write edi:write"
)
_shared_sqlite_dir: Path | None = None


# --- The site under its real servers ------------------------------------------------------------


def pytest_collection_finish(session: pytest.Session) -> None:
    """A server process cannot open an in-memory SQLite database: use a file when servers will run."""
    global _shared_sqlite_dir
    if _shared_sqlite_dir is None and any("app_server" in getattr(i, "fixturenames", ()) for i in session.items):
        _shared_sqlite_dir = sqlite_test_database_to_file()


def pytest_sessionfinish(session: pytest.Session) -> None:
    remove_directory(_shared_sqlite_dir)


@pytest.fixture(scope="module")
def app_server_env() -> dict[str, str]:
    """Extra environment for the ``app_server`` processes of a module (override it in the module)."""
    return {}


@pytest.fixture(scope="module", params=SERVER_KINDS)
def app_server(
    request: pytest.FixtureRequest,
    django_db_setup: Any,
    app_server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    """daphne, then gunicorn, serving the site against the test database; one of each per module.

    The data a test makes must be committed (``django_db(transaction=True)``) for the server to see it.
    """
    kind = str(request.param)
    server = start_app_server(kind, log_path=tmp_path_factory.mktemp(kind) / "server.log", env=app_server_env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live_app(app_server: AppServer) -> AppServer:
    """The same servers under the name the request-body tests use."""
    return app_server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    funcargs = getattr(item, "funcargs", {})
    server = funcargs.get("app_server") or funcargs.get("live_app")
    if report.failed and isinstance(server, AppServer):
        report.sections.append((f"{server.kind} log (last lines)", server.log_tail()))
    return report


# --- Partner clients and their data -------------------------------------------------------------


def issue_client(carrier: Carrier, scopes: str = ALL_SCOPES) -> IssuedClient:
    return partner_services.partner_client_create(
        carrier_id=carrier.pk, name=f"{carrier.slug} integration", scopes=scopes.split(), actor=Actor.system("test")
    )


def fetch_token(
    issued: IssuedClient, scope: str | None = None, client: Client | None = None, **extra: Any
) -> dict[str, Any]:
    basic = base64.b64encode(f"{issued.client_id}:{issued.client_secret}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = (client or Client()).post("/oauth2/token", data, HTTP_AUTHORIZATION=f"Basic {basic}", **extra)
    assert response.status_code == 200, response.content
    return dict(response.json())


def api_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def new_key() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def partner_a(carrier_a: Carrier) -> IssuedClient:
    return issue_client(carrier_a)


@pytest.fixture
def partner_b(carrier_b: Carrier) -> IssuedClient:
    return issue_client(carrier_b)


@pytest.fixture
def api_a(partner_a: IssuedClient) -> APIClient:
    return api_client(fetch_token(partner_a)["access_token"])


@pytest.fixture
def api_b(partner_b: IssuedClient) -> APIClient:
    return api_client(fetch_token(partner_b)["access_token"])


@pytest.fixture
def post_json() -> Callable[..., Any]:
    """POST JSON with a fresh Idempotency-Key unless one is given."""

    def post(client: APIClient, path: str, body: Any, key: str | None = None, **extra: Any) -> Any:
        headers = {"HTTP_IDEMPOTENCY_KEY": key or new_key(), **extra}
        return client.post(path, body, format="json", **headers)

    return post


@pytest.fixture
def tender_a(carrier_a: Carrier) -> Tender:
    return TenderFactory(carrier=carrier_a, status=TenderStatus.SENT)


@pytest.fixture
def mission_a(carrier_a: Carrier) -> Mission:
    shipment = ShipmentFactory()
    vehicle = VehicleFactory(carrier=carrier_a)
    return MissionFactory(carrier=carrier_a, shipment=shipment, vehicle=vehicle)


def assert_problem(response: Any, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    """Every error is RFC 9457 problem+json with the members we promise."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/api/v1/problems/")
    assert body["title"] and isinstance(body["detail"], str)
    if type_suffix:
        assert body["type"].endswith(type_suffix), body["type"]
    return dict(body)
