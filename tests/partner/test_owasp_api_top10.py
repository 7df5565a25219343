"""One test (or a few) per OWASP API Security Top 10 (2023) item that applies to the partner API."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from missions.choices import TenderStatus
from missions.events import Actor
from missions.models import Carrier, Mission, MissionException, Tender
from missions.partner import services as partner_services
from missions.partner.api.webhooks import webhook_sign
from missions.partner.services import IssuedClient
from tests.conftest import verified_client
from tests.partner.conftest import api_client, assert_problem, fetch_token, new_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    cache.clear()


def test_api1_2023_broken_object_level_authorization(
    api_b: APIClient, tender_a: Tender, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    for path in (f"/api/v1/tenders/{tender_a.pk}", f"/api/v1/missions/{mission_a.pk}"):
        assert_problem(api_b.get(path), 404)
    assert_problem(post_json(api_b, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "reject"}), 404)
    assert_problem(post_json(api_b, f"/api/v1/missions/{mission_a.pk}/status", {"status": "en_route"}), 404)
    # Ids of existing foreign objects and ids that do not exist answer the same: no probing.
    assert (
        api_b.get(f"/api/v1/tenders/{tender_a.pk}").json()["detail"]
        == api_b.get("/api/v1/tenders/999999").json()["detail"]
    )


def test_api2_2023_broken_authentication(partner_a: IssuedClient, partner_b: IssuedClient) -> None:
    assert_problem(api_client("").get("/api/v1/capabilities"), 401)
    assert_problem(api_client(partner_a.client_secret).get("/api/v1/capabilities"), 401)
    token_b = fetch_token(partner_b)["access_token"]
    # A valid token always acts as its own carrier, whatever the request claims.
    caps = api_client(token_b).get("/api/v1/capabilities", HTTP_X_CARRIER="carrier-a")
    assert caps.json()["carrier"]["slug"] == "carrier-b"


def test_api3_2023_broken_object_property_level_authorization(
    api_a: APIClient, tender_a: Tender, post_json: Callable[..., Any]
) -> None:
    # Mass assignment: read-only and foreign properties in the body are ignored.
    response = post_json(
        api_a,
        f"/api/v1/tenders/{tender_a.pk}/offers",
        {
            "kind": "counter",
            "price_usd": "1600.00",
            "tender_status": "accepted",
            "status": "accepted",
            "tender": 424242,
            "source": "console",
            "mission_id": 1,
        },
    )
    assert response.status_code == 201
    tender_a.refresh_from_db()
    assert tender_a.status == TenderStatus.COUNTERED
    assert tender_a.offers.get().source == "api"
    # Internal properties never leave: our idempotency key to the carrier, waterfall rank, fallback flag.
    shown = api_a.get(f"/api/v1/tenders/{tender_a.pk}").json()
    assert not {"idempotency_key", "waterfall_rank", "is_fallback", "status_reason", "carrier"} & set(shown)


def test_api4_2023_unrestricted_resource_consumption(api_a: APIClient, tender_a: Tender, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 4096
    big = json.dumps({"kind": "counter", "price_usd": "1.00", "metadata": {"x": "y" * 9000}})
    assert_problem(
        api_a.post(
            f"/api/v1/tenders/{tender_a.pk}/offers",
            big,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=new_key(),
        ),
        413,
    )
    settings.API_MAX_BODY_BYTES = 1_048_576
    # Metadata is bounded even under the body limit.
    body = assert_problem(
        api_a.post(
            f"/api/v1/tenders/{tender_a.pk}/offers",
            big,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=new_key(),
        ),
        400,
    )
    assert body["errors"][0]["pointer"] == "/metadata"
    settings.API_RATE_LIMIT = "2/min"
    api_a.get("/api/v1/capabilities")
    api_a.get("/api/v1/capabilities")
    limited = api_a.get("/api/v1/capabilities")
    assert_problem(limited, 429)
    assert int(limited["Retry-After"]) > 0


def test_api5_2023_broken_function_level_authorization(
    partner_a: IssuedClient, mission_a: Mission, dispatcher: User, admin_user: User
) -> None:
    reader = api_client(fetch_token(partner_a, scope="missions:read tender:read")["access_token"])
    response = reader.post(
        f"/api/v1/missions/{mission_a.pk}/exceptions",
        {"kind": "lost_comms"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
    )
    assert_problem(response, 403, "insufficient-scope")
    assert not MissionException.objects.exists()
    # A partner token opens no console page, and only platform admins manage credentials.
    token_only = Client(HTTP_AUTHORIZATION=f"Bearer {fetch_token(partner_a)['access_token']}")
    assert token_only.get("/partners/").status_code == 302
    assert verified_client(dispatcher).get("/partners/").status_code == 403
    assert verified_client(admin_user).get("/partners/").status_code == 200


def test_api6_2023_unrestricted_access_to_sensitive_business_flows(
    api_a: APIClient, mission_a: Mission, tender_a: Tender, post_json: Callable[..., Any]
) -> None:
    # A carrier reports progress; it cannot cancel a mission or hand it over (those are our decisions).
    for status in ("cancelled", "handed_over"):
        assert_problem(post_json(api_a, f"/api/v1/missions/{mission_a.pk}/status", {"status": status}), 400)
    # A tender is answered once; a second answer changes nothing.
    assert post_json(api_a, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "reject"}).status_code == 201
    assert_problem(post_json(api_a, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "accept"}), 409)
    tender_a.refresh_from_db()
    assert tender_a.status == TenderStatus.REJECTED


def _request_properties(schema: dict[str, Any]) -> list[dict[str, Any]]:
    # COMPONENT_SPLIT_REQUEST names every request-body component "...Request".
    found = []
    for name, component in schema["components"]["schemas"].items():
        if name.endswith("Request"):
            found.extend(component.get("properties", {}).values())
    for operations in schema["paths"].values():
        for operation in operations.values():
            found.extend(p.get("schema", {}) for p in operation.get("parameters", []))
    assert found
    return found


def test_api7_2023_server_side_request_forgery() -> None:
    # No partner input is a URL the server would fetch: no request property has format "uri".
    schema = yaml.safe_load((Path(settings.BASE_DIR) / "docs" / "openapi.yaml").read_text())
    assert all(prop.get("format") != "uri" for prop in _request_properties(schema))


def test_api8_2023_security_misconfiguration(api_a: APIClient, partner_a: IssuedClient) -> None:
    response = api_a.get("/api/v1/capabilities")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in response
    assert_problem(api_a.options("/api/v1/nowhere"), 404)
    assert_problem(api_a.generic("TRACE", "/api/v1/capabilities"), 405)
    token = Client().post(
        "/oauth2/token",
        {
            "grant_type": "client_credentials",
            "client_id": partner_a.client_id,
            "client_secret": partner_a.client_secret,
        },
    )
    assert token["Cache-Control"] == "no-store"


def _routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_routes(pattern.url_patterns, route))
        else:
            found.append(route)
    return found


def test_api9_2023_improper_inventory_management() -> None:
    # Every route under /api/v1/ (whichever app mounts it) is in the committed schema,
    # which test_schema keeps equal to the code: no undocumented or forgotten endpoint.
    schema = yaml.safe_load((Path(settings.BASE_DIR) / "docs" / "openapi.yaml").read_text())
    documented = set(schema["paths"])
    routes = [r for r in _routes(get_resolver().url_patterns) if r.startswith("api/v1/")]
    assert len(routes) >= 12
    for route in routes:
        if route in ("api/v1/schema/", "api/v1/docs/"):
            continue
        normalised = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route).replace("{pk}", "{id}")
        assert normalised in documented, route
    assert schema["info"]["version"] == settings.SPECTACULAR_SETTINGS["VERSION"]


def test_api10_2023_unsafe_consumption_of_apis(client: Client, carrier_a: Carrier, mission_a: Mission) -> None:
    # Data carriers push to us is verified and validated like any other input before it has an effect.
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier_a.pk, actor=Actor.system("t")).secret
    raw = json.dumps({"type": "mission.status", "data": {"mission_id": mission_a.pk, "status": "teleported"}}).encode()
    now = int(time.time())
    response = client.generic(
        "POST",
        f"/api/v1/webhooks/{carrier_a.slug}",
        raw,
        content_type="application/json",
        HTTP_WEBHOOK_ID="msg_x",
        HTTP_WEBHOOK_TIMESTAMP=str(now),
        HTTP_WEBHOOK_SIGNATURE=webhook_sign(secret=secret, webhook_id="msg_x", timestamp=now, body=raw),
    )
    body = assert_problem(response, 400)
    assert body["errors"][0]["pointer"] == "/status"
    mission_a.refresh_from_db()
    assert mission_a.status == "assigned"
