"""The edge (Debian's nginx with deploy/nginx/partner-api.conf): its own errors are problem documents,
chunked bodies pass through to daphne and gunicorn, and the application's own problems pass through untouched."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from missions.models import Mission
from missions.models.telemetry import TelemetryWindowEvent
from tests.conftest import require_service
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.partner.conftest import fetch_token, issue_client
from tests.partner.edge import NGINX, Edge, EdgeCertificates, make_certificates, start_edge
from tests.partner.live import RawResponse, raw_request, refused_in_time
from tests.partner.test_isolation import telemetry_event
from tests.servers import AppServer as LiveApp
from tests.servers import free_port

LIMIT = 1_048_576  # client_max_body_size 1m, the application's API_MAX_BODY_BYTES


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> EdgeCertificates:
    require_service("nginx", NGINX is not None)
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def edge_without_upstream(tmp_path: Path, certificates: EdgeCertificates) -> Iterator[Edge]:
    # Nothing listens upstream: what these tests see is the edge's own doing.
    edge = start_edge(tmp_path / "edge", upstream=f"127.0.0.1:{free_port()}", certificates=certificates)
    yield edge
    edge.stop()


def assert_edge_problem(response: RawResponse | requests.Response, status: int, type_suffix: str) -> dict[str, Any]:
    if isinstance(response, RawResponse):
        code, headers, content = response.status, response.headers, response.body
    else:
        code, content = response.status_code, response.content
        headers = {name.lower(): value for name, value in response.headers.items()}
    assert code == status, (code, content[:300])
    assert headers["content-type"] == "application/problem+json", headers
    assert headers["cache-control"] == "no-store"
    body = json.loads(content)
    assert body["status"] == status
    assert body["type"] == f"/api/v1/problems/{type_suffix}"
    assert body["title"] and body["detail"]
    assert len(body["request_id"]) == 32
    return dict(body)


def test_unknown_paths_are_a_404_problem(edge_without_upstream: Edge) -> None:
    edge = edge_without_upstream
    for path in ("/", "/admin/", "/_edge/413"):  # the error documents themselves are not reachable
        response = requests.get(f"{edge.url}{path}", verify=edge.certificates.ca, timeout=10)
        assert_edge_problem(response, 404, "not-found")


def test_a_body_over_the_edge_limit_is_a_413_problem_declared_or_chunked(edge_without_upstream: Edge) -> None:
    edge = edge_without_upstream
    declared = raw_request(
        edge,
        "POST",
        "/api/v1/telemetry/batch",
        headers={"Content-Type": "application/json", "Content-Length": str(LIMIT + 1)},
        tls=edge.tls(),
    )
    body = assert_edge_problem(declared, 413, "body-too-large")
    assert body["max_body_bytes"] == LIMIT
    bound = refused_in_time(LIMIT)
    chunked = raw_request(
        edge,
        "POST",
        "/api/v1/telemetry/batch",
        headers={"Content-Type": "application/json"},
        chunks=(b" " * 65536 for _ in range(2 * bound // 65536)),  # twice the bound, refused once past the limit
        tls=edge.tls(),
    )
    assert_edge_problem(chunked, 413, "body-too-large")
    assert chunked.sent_body_bytes <= bound, (chunked.sent_body_bytes, bound)


def test_certificate_errors_are_400_problems(edge_without_upstream: Edge, tmp_path: Path) -> None:
    edge = edge_without_upstream
    rogue = requests.get(
        f"{edge.url}/api/v1/capabilities", cert=edge.certificates.rogue, verify=edge.certificates.ca, timeout=10
    )
    assert_edge_problem(rogue, 400, "client-certificate-invalid")  # nginx's 495
    plain = requests.get(f"http://127.0.0.1:{edge.port}/api/v1/capabilities", timeout=10)
    assert_edge_problem(plain, 400, "https-required")  # nginx's 497


def test_a_missing_required_certificate_is_a_400_problem(tmp_path: Path, certificates: EdgeCertificates) -> None:
    # The shipped edge leaves certificates optional (the application decides per carrier);
    # an operator who makes them mandatory gets nginx's 496 as a problem too.
    edge = start_edge(
        tmp_path / "edge",
        upstream=f"127.0.0.1:{free_port()}",
        certificates=certificates,
        replace={"ssl_verify_client optional;": "ssl_verify_client on;"},
    )
    try:
        response = requests.get(f"{edge.url}/api/v1/capabilities", verify=certificates.ca, timeout=10)
        assert_edge_problem(response, 400, "client-certificate-required")
    finally:
        edge.stop()


def test_an_unreachable_application_is_a_502_problem(edge_without_upstream: Edge) -> None:
    edge = edge_without_upstream
    response = requests.get(f"{edge.url}/api/v1/capabilities", verify=edge.certificates.ca, timeout=10)
    assert_edge_problem(response, 502, "upstream-unavailable")


def test_an_application_that_does_not_answer_is_a_504_problem(tmp_path: Path, certificates: EdgeCertificates) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        edge = start_edge(
            tmp_path / "edge",
            upstream=f"127.0.0.1:{silent.getsockname()[1]}",
            certificates=certificates,
            replace={"proxy_read_timeout 60s;": "proxy_read_timeout 1s;"},
        )
        try:
            response = requests.get(f"{edge.url}/api/v1/capabilities", verify=certificates.ca, timeout=30)
            assert_edge_problem(response, 504, "upstream-timeout")
        finally:
            edge.stop()


# --- Through the edge to daphne and gunicorn ---------------------------------------------------------------


@pytest.fixture
def edge_to_app(live_app: LiveApp, tmp_path: Path, certificates: EdgeCertificates) -> Iterator[Edge]:
    edge = start_edge(tmp_path / "edge", upstream="{}:{}".format(*live_app.address), certificates=certificates)
    yield edge
    edge.stop()


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_passes_through_the_edge(edge_to_app: Edge) -> None:
    carrier = CarrierFactory(slug=f"edge-{uuid.uuid4().hex[:8]}")
    mission: Mission = MissionFactory(
        carrier=carrier, shipment=ShipmentFactory(), vehicle=VehicleFactory(carrier=carrier)
    )
    token = fetch_token(issue_client(carrier))["access_token"]
    events = [telemetry_event(mission) for _ in range(5)]
    body = json.dumps({"events": events}).encode()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    response = raw_request(
        edge_to_app,
        "POST",
        "/api/v1/telemetry/batch",
        headers=headers,
        chunks=[body[i : i + 100] for i in range(0, len(body), 100)],
        tls=edge_to_app.tls(),
    )
    assert response.status == 202, response.body
    assert json.loads(response.body)["accepted"] == 5
    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == 5

    # A body of exactly the limit passes; one byte more is the edge's 413.
    exact = json.dumps({"events": [telemetry_event(mission)]}).encode()
    exact = exact[:-1] + b" " * (LIMIT - len(exact)) + b"}"
    response = raw_request(
        edge_to_app,
        "POST",
        "/api/v1/telemetry/batch",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        chunks=[exact[i : i + 65536] for i in range(0, LIMIT, 65536)],
        tls=edge_to_app.tls(),
    )
    assert response.status == 202, response.body
    response = raw_request(
        edge_to_app,
        "POST",
        "/api/v1/telemetry/batch",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        chunks=[exact, b" "],
        tls=edge_to_app.tls(),
    )
    assert_edge_problem(response, 413, "body-too-large")

    # The application's own problems pass through untouched: a string it cannot store.
    bad = json.dumps({"kind": "lost_comms", "detail": "gw\u0000"}).encode()
    response = raw_request(
        edge_to_app,
        "POST",
        f"/api/v1/missions/{mission.pk}/exceptions",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        chunks=[bad],
        tls=edge_to_app.tls(),
    )
    assert response.status == 400
    problem = json.loads(response.body)
    assert problem["errors"][0]["pointer"] == "/detail"
    assert "request_id" not in problem  # the application's document, not the edge's
