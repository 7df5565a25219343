"""Event log replay (GET /api/v1/events?after=) and the partner's own SLA figures (GET /api/v1/sla)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Mission
from missions.services import mission_exception_report, mission_transition
from tests.factories import MissionFactory
from tests.partner.conftest import assert_problem

pytestmark = pytest.mark.django_db


def test_replay_from_a_cursor_is_ordered_complete_and_scoped(api_a: APIClient, mission_a: Mission) -> None:
    other = MissionFactory(status=MissionStatus.EN_ROUTE)  # another carrier's mission
    actor = Actor.system("test")
    mission_transition(mission_id=mission_a.pk, to_status=MissionStatus.EN_ROUTE, actor=actor)
    first = api_a.get("/api/v1/events").json()
    cursor = first["next_cursor"]
    assert [e["action"] for e in first["events"]][-1] == "mission.status_changed"
    mission_exception_report(mission_id=other.pk, kind="degraded_sensors", actor=actor)
    mission_exception_report(mission_id=mission_a.pk, kind="reroute_request", actor=actor)
    mission_transition(mission_id=mission_a.pk, to_status=MissionStatus.ARRIVING, actor=actor)
    body = api_a.get(f"/api/v1/events?after={cursor}").json()
    assert [e["action"] for e in body["events"]] == ["mission.exception", "mission.status_changed"]
    assert all(e["mission_id"] == mission_a.pk for e in body["events"])
    ids = [e["id"] for e in body["events"]]
    assert ids == sorted(ids) and body["next_cursor"] == ids[-1] and body["has_more"] is False
    page = api_a.get(f"/api/v1/events?after={cursor}&limit=1").json()
    assert [e["id"] for e in page["events"]] == ids[:1] and page["has_more"] is True
    assert api_a.get(f"/api/v1/events?after={ids[-1]}").json()["events"] == []


@pytest.mark.parametrize("query", ["after=-1", "after=abc", "limit=0", "limit=5000"])
def test_replay_rejects_bad_cursor(api_a: APIClient, query: str) -> None:
    assert_problem(api_a.get(f"/api/v1/events?{query}"), 400)


def test_replay_and_sla_need_a_token() -> None:
    client = APIClient()
    assert_problem(client.get("/api/v1/events"), 401)
    assert_problem(client.get("/api/v1/sla"), 401)


def test_sla_summary_is_the_callers_own(api_a: APIClient, api_b: APIClient, mission_a: Mission) -> None:
    from sla.services import sla_evaluate

    sla_evaluate(carrier_id=mission_a.carrier_id, now=timezone.now())
    mine = api_a.get("/api/v1/sla").json()
    assert mine["carrier_id"] == mission_a.carrier_id
    assert mine["slis"], "evaluated SLIs are listed"
    theirs = api_b.get("/api/v1/sla").json()
    assert theirs["carrier_id"] != mission_a.carrier_id and theirs["slis"] == {}
