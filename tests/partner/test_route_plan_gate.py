"""The en-route gate: a carrier whose contract requires signed route plans sets off only on a verified, valid plan."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from missions import services as mission_services
from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission
from missions.partner import services as partner_services
from missions.routeplans import services as plan_services
from missions.services import RoutePlanRequired
from missions.simulators.plan_signing import KeyPair, key_pair_generate, plan_bytes, signed_submission
from tests.factories import ContractFactory, MissionFactory
from tests.partner.conftest import assert_problem
from tests.partner.test_webhooks import _deliver, _status

STATUS = {"status": "en_route", "reason": ""}


@pytest.fixture
def key_a(carrier_a: Carrier) -> KeyPair:
    pair = key_pair_generate()
    plan_services.signing_key_register(
        carrier_id=carrier_a.pk, name="plans", public_key=pair.public_pem, actor=Actor.system("test")
    )
    return pair


@pytest.fixture
def secret_a(carrier_a: Carrier) -> str:
    return partner_services.webhook_secret_rotate(carrier_id=carrier_a.pk, actor=Actor.system("t")).secret


@pytest.fixture
def plans_required(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, route_plan_required=True)


def submit(api: APIClient, post_json: Callable[..., Any], mission: Mission, key: KeyPair, **window: Any) -> Any:
    now = timezone.now()
    artifact = plan_bytes(
        mission_id=mission.pk,
        version=window.pop("version", 1),
        valid_from=window.pop("valid_from", now - timedelta(minutes=1)),
        valid_until=window.pop("valid_until", now + timedelta(hours=2)),
        waypoints=[[32.7, -96.8], [30.3, -97.7]],
    )
    response = post_json(
        api, f"/api/v1/missions/{mission.pk}/route-plans", signed_submission(key.private_pem, artifact)
    )
    assert response.status_code == 201, response.content
    return response


@pytest.mark.django_db
def test_without_the_contract_term_a_mission_sets_off_without_a_plan(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any]
) -> None:
    ContractFactory(carrier=mission_a.carrier)  # route_plan_required defaults to off
    response = post_json(api_a, f"/api/v1/missions/{mission_a.pk}/status", STATUS)
    assert response.status_code == 200, response.content


@pytest.mark.django_db
@pytest.mark.usefixtures("plans_required")
def test_the_status_api_refuses_en_route_without_a_plan_then_accepts_it_with_one(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    body = assert_problem(
        post_json(api_a, f"/api/v1/missions/{mission_a.pk}/status", STATUS), 409, "/route-plan-required"
    )
    assert "requires a signed route plan" in body["detail"]
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.ASSIGNED
    submit(api_a, post_json, mission_a, key_a)
    response = post_json(api_a, f"/api/v1/missions/{mission_a.pk}/status", STATUS)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == MissionStatus.EN_ROUTE


@pytest.mark.django_db
@pytest.mark.usefixtures("plans_required")
def test_an_expired_plan_does_not_open_the_gate(
    api_a: APIClient, mission_a: Mission, key_a: KeyPair, post_json: Callable[..., Any]
) -> None:
    submit(api_a, post_json, mission_a, key_a, valid_until=timezone.now() + timedelta(minutes=30))
    with time_machine.travel(timezone.now() + timedelta(hours=1)), pytest.raises(RoutePlanRequired, match="expired"):
        mission_services.mission_transition(
            mission_id=mission_a.pk, to_status=MissionStatus.EN_ROUTE, actor=Actor.for_carrier(mission_a.carrier)
        )


@pytest.mark.django_db
@pytest.mark.usefixtures("plans_required")
def test_the_status_webhook_gets_the_problem_too(
    client: Client,
    carrier_a: Carrier,
    secret_a: str,
    mission_a: Mission,
) -> None:
    response = _deliver(client, carrier_a, secret_a, _status(mission_a))
    assert_problem(response, 409, "/route-plan-required")
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.ASSIGNED


@pytest.mark.django_db
@pytest.mark.usefixtures("plans_required")
def test_a_plan_of_another_carriers_mission_does_not_open_the_gate(
    api_a: APIClient,
    api_b: APIClient,
    carrier_b: Carrier,
    mission_a: Mission,
    key_a: KeyPair,
    post_json: Callable[..., Any],
) -> None:
    other = MissionFactory(carrier=carrier_b)
    ContractFactory(carrier=carrier_b, route_plan_required=True)
    submit(api_a, post_json, mission_a, key_a)
    assert_problem(post_json(api_b, f"/api/v1/missions/{other.pk}/status", STATUS), 409, "/route-plan-required")
    other.refresh_from_db()
    assert other.status == MissionStatus.ASSIGNED


@pytest.mark.django_db
@pytest.mark.usefixtures("plans_required")
def test_the_automation_resuming_a_suspended_mission_is_not_gated(mission_a: Mission) -> None:
    # It records that a truck already driving reported again (runbooks: comms recovered).
    mission_services.mission_transition(
        mission_id=mission_a.pk,
        to_status=MissionStatus.SUSPENDED,
        actor=Actor.for_carrier(mission_a.carrier),
        reason="lost comms",
    )
    mission_services.mission_transition(
        mission_id=mission_a.pk, to_status=MissionStatus.EN_ROUTE, actor=Actor.system("runbook"), reason="recovered"
    )
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.EN_ROUTE
