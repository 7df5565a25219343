"""Limits: per-client rate limit (429 + Retry-After), body size (413), page size cap, batch size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from missions.choices import TenderStatus
from missions.models import Carrier, Mission, Offer, Tender
from tests.factories import TenderFactory
from tests.partner.conftest import assert_problem, new_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    cache.clear()


def test_rate_limit_is_429_with_retry_after_per_client(api_a: APIClient, api_b: APIClient, settings: Any) -> None:
    settings.API_RATE_LIMIT = "3/min"
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for remaining in (2, 1, 0):
            ok = api_a.get("/api/v1/capabilities")
            assert ok.status_code == 200
            assert ok["RateLimit-Policy"] == '"partner";q=3;w=60'
            assert ok["RateLimit"].startswith(f'"partner";r={remaining};t=')
        limited = api_a.get("/api/v1/capabilities")
        body = assert_problem(limited, 429, "rate-limited")
        assert body["violated-policies"] == ["partner"]
        wait = int(limited["Retry-After"])
        # A sliding window: the burst's minute fades out through the next one, so at most two windows.
        assert 0 < wait <= 120
        assert limited["RateLimit"] == f'"partner";r=0;t={wait}'
        # Another client has its own budget.
        assert api_b.get("/api/v1/capabilities").status_code == 200
        # Retry-After is truthful: a second early is still refused, on time is served.
        clock.shift(wait - 1)
        assert api_a.get("/api/v1/capabilities").status_code == 429
        clock.shift(1)
        assert api_a.get("/api/v1/capabilities").status_code == 200


def test_an_empty_rate_turns_the_limit_off(api_a: APIClient, settings: Any) -> None:
    settings.API_RATE_LIMIT = ""
    for _ in range(5):
        response = api_a.get("/api/v1/capabilities")
        assert response.status_code == 200
        assert "RateLimit" not in response


def test_body_over_the_limit_is_413_and_nothing_is_stored(api_a: APIClient, tender_a: Tender, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    body = '{"kind": "counter", "price_usd": "10.00", "reason": "' + "x" * 4096 + '"}'
    response = api_a.post(
        f"/api/v1/tenders/{tender_a.pk}/offers", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=new_key()
    )
    body_json = assert_problem(response, 413, "body-too-large")
    assert body_json["max_body_bytes"] == 2048
    assert not Offer.objects.exists()


def test_page_size_is_capped(api_a: APIClient, carrier_a: Carrier, settings: Any) -> None:
    settings.API_MAX_PAGE_SIZE = 5
    TenderFactory.create_batch(7, carrier=carrier_a, status=TenderStatus.SENT)
    response = api_a.get("/api/v1/tenders", {"page_size": 1000})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 5
    assert response.json()["count"] == 7
    assert api_a.get("/api/v1/capabilities").json()["limits"]["max_page_size"] == 5


def test_unknown_status_filter_is_400(api_a: APIClient) -> None:
    assert_problem(api_a.get("/api/v1/tenders", {"status": "bogus"}), 400, "validation-error")


def test_batch_over_the_limit_is_413(
    api_a: APIClient, mission_a: Mission, settings: Any, post_json: Callable[..., Any]
) -> None:
    from tests.partner.test_isolation import telemetry_event

    settings.API_TELEMETRY_MAX_BATCH = 2
    events = [telemetry_event(mission_a) for _ in range(3)]
    body = assert_problem(post_json(api_a, "/api/v1/telemetry/batch", {"events": events}), 413, "batch-too-large")
    assert body["max_batch_events"] == 2
    mission_a.refresh_from_db()
    assert mission_a.last_seen_at is None
