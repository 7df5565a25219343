"""HTTP telemetry batches keep each carrier's missions in a per-process cache, as the streams do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from missions.models import Mission
from missions.telemetry import ingest
from tests.partner.test_isolation import telemetry_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The mission ids each database read of the ingest asked for."""
    calls: list[set[int]] = []
    real = ingest.missions_load

    def counted(ids: Any, carrier_id: int) -> list[Any]:
        ids = set(ids)
        calls.append(ids)
        return real(ids, carrier_id)

    monkeypatch.setattr(ingest, "missions_load", counted)
    return calls


def _post(client: APIClient, post_json: Callable[..., Any], mission: Mission) -> dict[str, Any]:
    response = post_json(client, "/api/v1/telemetry/batch", {"events": [telemetry_event(mission)]})
    assert response.status_code == 202, response.content
    return dict(response.json())


def test_a_second_batch_reads_no_mission_again(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any], loads: list[set[int]]
) -> None:
    assert _post(api_a, post_json, mission_a)["accepted"] == 1
    assert _post(api_a, post_json, mission_a)["accepted"] == 1
    assert loads == [{mission_a.pk}]


@override_settings(TELEMETRY_MISSION_CACHE_SECONDS=0)
def test_with_the_cache_off_every_batch_reads_its_missions(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any], loads: list[set[int]]
) -> None:
    assert _post(api_a, post_json, mission_a)["accepted"] == 1
    assert _post(api_a, post_json, mission_a)["accepted"] == 1
    assert loads == [{mission_a.pk}, {mission_a.pk}]


def test_another_carrier_never_gets_a_mission_another_carrier_cached(
    api_a: APIClient, api_b: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    assert _post(api_a, post_json, mission_a)["accepted"] == 1
    theirs = _post(api_b, post_json, mission_a)
    assert theirs["accepted"] == 0
    assert "is not a mission of this carrier" in theirs["rejected"][0]["reason"]
    assert _post(api_a, post_json, mission_a)["accepted"] == 1


def test_a_mission_named_its_truck_later_is_read_again(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any], loads: list[set[int]]
) -> None:
    vehicle = mission_a.vehicle
    Mission.objects.filter(pk=mission_a.pk).update(vehicle=None)
    mission_a.refresh_from_db()
    refused = _post(api_a, post_json, mission_a)
    assert refused["accepted"] == 0 and "no vehicle assigned yet" in refused["rejected"][0]["reason"]
    Mission.objects.filter(pk=mission_a.pk).update(vehicle=vehicle)
    mission_a.refresh_from_db()
    assert _post(api_a, post_json, mission_a)["accepted"] == 1
    assert len(loads) == 2
