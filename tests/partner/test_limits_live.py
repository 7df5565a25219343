"""Rate limits against live servers, daphne and gunicorn (two worker processes) both.

Concurrent bursts from threads: a burst of N calls over a limit of L gets
exactly L admitted and N - L answers 429 (problem+json, ``Retry-After``);
every answer carries ``RateLimit-Policy`` and ``RateLimit``. The address a
limit counts is ``X-Forwarded-For``'s only when the connection comes from the
trusted edge (127.0.0.2 here). ``/metrics`` needs its token in production.
When the limit store does not answer, ingest still succeeds.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone

from missions.events import Actor
from missions.models import Carrier, Mission, TelemetryWindowEvent
from missions.partner import services as partner_services
from missions.partner.api.webhooks import webhook_sign
from missions.partner.services import IssuedClient
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.live import EDGE_ADDRESS, burst, client_from, field_items, inside_one_window, live_env, serve
from tests.partner.conftest import issue_client
from tests.partner.test_isolation import telemetry_event
from tests.servers import AppServer as LiveApp

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMIT = 20
METRICS_TOKEN = "live-metrics-token-0123456789"
LIMITS_ENV = {
    "API_RATE_LIMIT": f"{LIMIT}/h",  # an hour: a burst never straddles two windows
    "WEBHOOK_RATE_LIMIT": str(LIMIT),
    "PARTNER_TRUSTED_PROXIES": f"{EDGE_ADDRESS}/32",
    "METRICS_TOKEN": METRICS_TOKEN,
}


@pytest.fixture(scope="module", params=["daphne", "gunicorn"])
def app(
    request: pytest.FixtureRequest, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[LiveApp]:
    tmp = tmp_path_factory.mktemp(f"limits-{request.param}")
    with django_db_blocker.unblock():
        env = live_env(request.param, tmp, **LIMITS_ENV)
    with serve(request.param, env, tmp / "server.log") as live:
        yield live


def _token(app: LiveApp, issued: IssuedClient) -> str:
    with client_from(app) as http:
        response = http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(issued.client_id, issued.client_secret)
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def assert_rate_limited(response: httpx.Response, policy: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 429 and body["type"].endswith("/rate-limited")
    assert body["violated-policies"] == [policy]
    assert int(response.headers["Retry-After"]) >= 1
    assert field_items(response.headers["RateLimit"])[policy]["r"] == "0"


@pytest.fixture
def carrier() -> Carrier:
    return CarrierFactory(slug=f"live-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def issued(carrier: Carrier) -> IssuedClient:
    return issue_client(carrier)


@pytest.fixture
def mission(carrier: Carrier) -> Mission:
    return MissionFactory(carrier=carrier, shipment=ShipmentFactory(), vehicle=VehicleFactory(carrier=carrier))


# --- Point 1: a burst over the limit ----------------------------------------------------------


def test_a_concurrent_burst_over_the_client_limit_is_refused_beyond_it(app: LiveApp, issued: IssuedClient) -> None:
    token = _token(app, issued)
    inside_one_window(3600)
    responses = burst(
        app, 3 * LIMIT, lambda http, _: http.get("/api/v1/capabilities", headers={"Authorization": f"Bearer {token}"})
    )
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(admitted) == LIMIT
    assert len(refused) == 2 * LIMIT
    for response in refused:
        assert_rate_limited(response, "partner")
    for response in responses:
        assert field_items(response.headers["RateLimit-Policy"]) == {"partner": {"q": str(LIMIT), "w": "3600"}}
    # The admitted answers counted down from the limit, each unit once.
    remaining = sorted(int(field_items(r.headers["RateLimit"])["partner"]["r"]) for r in admitted)
    assert remaining == list(range(LIMIT))


def test_capabilities_state_the_policies(app: LiveApp, issued: IssuedClient) -> None:
    token = _token(app, issued)
    with client_from(app) as http:
        response = http.get("/api/v1/capabilities", headers={"Authorization": f"Bearer {token}"})
    limits = response.json()["limits"]
    policies = {p["name"]: p for p in limits["rate_limit_policies"]}
    assert policies["partner"]["quota"] == LIMIT and policies["partner"]["window_seconds"] == 3600
    assert policies["partner"]["field"] == response.headers["RateLimit-Policy"]
    assert policies["webhook"]["quota"] == LIMIT and policies["webhook"]["partition"] == "carrier"
    assert limits["rate_limit_fields"].startswith("draft-ietf-httpapi-ratelimit-headers")


def _delivery(carrier: Carrier, secret: str, mission: Mission) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"type": "telemetry", "timestamp": timezone.now().isoformat(), "data": {"events": [telemetry_event(mission)]}}
    ).encode()
    webhook_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    return body, {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=stamp, body=body),
    }


def test_a_burst_of_webhook_deliveries_is_limited(app: LiveApp, carrier: Carrier, mission: Mission) -> None:
    """gunicorn's fast path limits verified deliveries per carrier; daphne's view, per address."""
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("t")).secret
    deliveries = [_delivery(carrier, secret, mission) for _ in range(2 * LIMIT)]
    policy = "webhook" if app.kind == "gunicorn" else "address"
    inside_one_window(60)
    url = f"/api/v1/webhooks/{carrier.slug}"
    responses = burst(
        app, len(deliveries), lambda http, i: http.post(url, content=deliveries[i][0], headers=deliveries[i][1])
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * LIMIT + [429] * LIMIT, [r.text for r in responses if r.status_code not in (200, 429)]
    for response in responses:
        assert policy in field_items(response.headers["RateLimit-Policy"])
        if response.status_code == 429:
            assert_rate_limited(response, policy)
    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == LIMIT


def test_every_api_answer_carries_the_fields(app: LiveApp) -> None:
    with client_from(app) as http:
        for response in (
            http.get("/api/v1/no-such-thing"),  # 404 before any view
            http.get("/api/v1/capabilities"),  # 401: no credentials
            http.post("/api/v1/webhooks/nobody", content=b"{}", headers={"Content-Type": "application/json"}),
        ):
            assert response.status_code in (401, 404), response.text
            assert "RateLimit-Policy" in response.headers and "RateLimit" in response.headers


# --- Point 3: the address behind the limit -----------------------------------------------------


def _anonymous_posts(http: httpx.Client, count: int, forwarded: Callable[[int], str]) -> list[int]:
    # A delivery to an unknown carrier: limited per address (before the view looks the carrier up), else 404.
    return [
        http.post(
            "/api/v1/webhooks/nobody",
            content=b"{}",
            headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded(i)},
        ).status_code
        for i in range(count)
    ]


def test_forwarded_for_from_a_direct_client_does_not_reset_its_bucket(app: LiveApp) -> None:
    with client_from(app, "127.0.0.1") as http:
        statuses = _anonymous_posts(http, LIMIT + 5, lambda i: f"198.51.100.{i + 1}")
    assert statuses == [404] * LIMIT + [429] * 5


def test_forwarded_for_from_the_edge_names_the_client(app: LiveApp) -> None:
    with client_from(app, EDGE_ADDRESS) as http:
        # Each client behind the edge has its own bucket...
        assert set(_anonymous_posts(http, LIMIT + 5, lambda i: f"203.0.113.{i + 1}")) == {404}
        # ...and what a client writes left of the edge's entry does not make it someone else.
        statuses = _anonymous_posts(http, LIMIT + 5, lambda i: f"10.9.{i}.1, 192.0.2.77")
    assert statuses == [404] * LIMIT + [429] * 5


# --- Point 9: /metrics in production ---------------------------------------------------------


def test_metrics_need_the_token(app: LiveApp) -> None:
    with client_from(app) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        response = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert "tms_ratelimit_local_fallback" in response.text


@pytest.mark.parametrize("kind", ["daphne", "gunicorn"])
def test_metrics_without_a_token_are_absent_in_production(kind: str, tmp_path: Path) -> None:
    env = live_env(kind, tmp_path, **{**LIMITS_ENV, "METRICS_TOKEN": ""})
    with serve(kind, env, tmp_path / "server.log") as app, client_from(app) as http:
        assert http.get("/metrics").status_code == 404
        assert http.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


# --- The limit store down: ingest fails open (issue 24) ---------------------------------------


@pytest.mark.parametrize("kind", ["daphne", "gunicorn"])
def test_ingest_goes_on_when_the_limit_store_is_down(
    kind: str, tmp_path: Path, carrier: Carrier, mission: Mission
) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    env = live_env(kind, tmp_path, **{**LIMITS_ENV, "RATELIMIT_REDIS_URL": f"redis://127.0.0.1:{dead}/0"})
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("t")).secret
    with serve(kind, env, tmp_path / "server.log") as app, client_from(app) as http:
        statuses = []
        for _ in range(LIMIT // 2):
            body, headers = _delivery(carrier, secret, mission)
            statuses.append(http.post(f"/api/v1/webhooks/{carrier.slug}", content=body, headers=headers).status_code)
        metrics = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        log = app.log_text()
    assert statuses == [200] * (LIMIT // 2)
    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == LIMIT // 2
    assert re.search(r"^tms_ratelimit_local_fallback(\{[^}]*\})? 1\.0$", metrics, re.M), metrics
    # Said once per process (one for daphne, at most one per gunicorn worker), not once per request.
    warnings = log.count("the shared store does not answer")
    assert 1 <= warnings <= (1 if kind == "daphne" else 2), log
