"""Every error path of the API answers RFC 9457 problem+json with the precise status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from missions.choices import MissionStatus, TenderStatus
from missions.models import Mission, Offer, Tender
from missions.partner.api import views
from tests.partner.conftest import assert_problem, new_key

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_404_problem(client: Client) -> None:
    assert_problem(client.get("/api/v1/no-such-thing"), 404, "not-found")


def test_wrong_method_is_405_problem(api_a: APIClient) -> None:
    response = api_a.delete("/api/v1/capabilities")
    assert_problem(response, 405, "method-not-allowed")


def test_wrong_content_type_is_415_problem(api_a: APIClient, tender_a: Tender) -> None:
    response = api_a.post(
        f"/api/v1/tenders/{tender_a.pk}/offers",
        "kind=accept",
        content_type="application/x-www-form-urlencoded",
        HTTP_IDEMPOTENCY_KEY=new_key(),
    )
    assert_problem(response, 415, "unsupported-media-type")


def test_malformed_json_is_400_problem(api_a: APIClient, tender_a: Tender) -> None:
    response = api_a.post(
        f"/api/v1/tenders/{tender_a.pk}/offers",
        '{"kind": "accept",',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=new_key(),
    )
    assert_problem(response, 400, "malformed-request")
    assert not Offer.objects.exists()


def test_wrong_types_and_unknown_enums_point_at_fields(
    api_a: APIClient, tender_a: Tender, post_json: Callable[..., Any]
) -> None:
    response = post_json(
        api_a, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "maybe", "price_usd": "cheap", "metadata": []}
    )
    body = assert_problem(response, 400, "validation-error")
    pointers = {error["pointer"] for error in body["errors"]}
    assert {"/kind", "/price_usd", "/metadata"} <= pointers
    assert not Offer.objects.exists()


def test_nested_errors_point_into_the_body(api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]) -> None:
    from tests.partner.test_isolation import telemetry_event

    bad = telemetry_event(mission_a, position={"lat": 123.0, "lon": -96.0})
    body = assert_problem(post_json(api_a, "/api/v1/telemetry", bad), 400, "validation-error")
    assert body["errors"][0]["pointer"] == "/position/lat"


def test_illegal_transition_is_409_problem(api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]) -> None:
    response = post_json(api_a, f"/api/v1/missions/{mission_a.pk}/status", {"status": "unloading"})
    body = assert_problem(response, 409, "illegal-transition")
    assert body["current"] == "assigned" and body["target"] == "unloading"
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.ASSIGNED


def test_answer_to_closed_tender_is_409_problem(
    api_a: APIClient, tender_a: Tender, post_json: Callable[..., Any]
) -> None:
    Tender.objects.filter(pk=tender_a.pk).update(status=TenderStatus.CANCELLED)
    assert_problem(post_json(api_a, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "accept"}), 409, "conflict")


def test_domain_rule_is_422_problem_with_pointer(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    # A failed mission needs a reason: a valid body the domain refuses.
    response = post_json(api_a, f"/api/v1/missions/{mission_a.pk}/status", {"status": "failed"})
    body = assert_problem(response, 422, "domain-rule")
    assert body["errors"][0]["pointer"] == "/reason"


def test_unknown_vehicle_on_accept_is_422(api_a: APIClient, tender_a: Tender, post_json: Callable[..., Any]) -> None:
    response = post_json(
        api_a, f"/api/v1/tenders/{tender_a.pk}/offers", {"kind": "accept", "vehicle_external_id": "GHOST-1"}
    )
    body = assert_problem(response, 422, "domain-rule")
    assert body["errors"][0]["pointer"] == "/vehicle_external_id"
    tender_a.refresh_from_db()
    assert tender_a.status == TenderStatus.SENT


def test_unhandled_error_is_500_problem_without_internals(api_a: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(views.CapabilitiesView, "get", boom)
    api_a.raise_request_exception = False
    response = api_a.get("/api/v1/capabilities")
    body = assert_problem(response, 500, "internal-error")
    assert "secret internal detail" not in response.content.decode()
    assert body["request_id"]
