"""The demo's local pager: it takes what PagerDuty's Events API v2 takes, refuses what it refuses, and lists pages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.test import override_settings

from missions.events import Actor
from missions.simulators.pager import PagerSimulator
from runbooks.models import PagerMessage
from runbooks.pager import page_deliver, page_enqueue
from runbooks.services import incident_open
from tests.factories import MissionFactory


@pytest.fixture
def pager() -> Iterator[PagerSimulator]:
    sim = PagerSimulator().start()
    yield sim
    sim.stop()


TRIGGER = {
    "routing_key": "demo-routing-key",
    "event_action": "trigger",
    "dedup_key": "tms-incident-7",
    "payload": {"summary": "INC-7 Lost comms", "source": "lonestar", "severity": "critical"},
}


def test_a_trigger_is_accepted_kept_and_listed(pager: PagerSimulator) -> None:
    answer = httpx.post(pager.events_url, json=TRIGGER)
    assert answer.status_code == 202
    assert answer.json() == {"status": "success", "message": "Event processed", "dedup_key": "tms-incident-7"}
    resolve = {"routing_key": "demo-routing-key", "event_action": "resolve", "dedup_key": "tms-incident-7"}
    assert httpx.post(pager.events_url, json=resolve).status_code == 202
    pages = httpx.get(f"{pager.url}/pages").json()["pages"]
    assert [(p["event_action"], p["dedup_key"]) for p in pages] == [
        ("trigger", "tms-incident-7"),
        ("resolve", "tms-incident-7"),
    ]
    assert pages[0]["summary"] == "INC-7 Lost comms" and pages[0]["severity"] == "critical"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({**TRIGGER, "routing_key": ""}, "'routing_key' is missing or empty."),
        ({**TRIGGER, "event_action": "shout"}, "'event_action' must be one of trigger, acknowledge, resolve."),
        ({**TRIGGER, "payload": {"summary": "x", "source": "y", "severity": "loud"}}, "'payload.severity' must be"),
        ({**TRIGGER, "payload": None}, "'payload' is required on a trigger."),
        ({"routing_key": "k", "event_action": "acknowledge"}, "'dedup_key' is required to acknowledge or resolve."),
        ([1, 2], "The body must be a JSON object."),
    ],
)
def test_what_pagerduty_refuses_is_refused_with_its_reason(pager: PagerSimulator, body: object, error: str) -> None:
    answer = httpx.post(pager.events_url, json=body)
    assert answer.status_code == 400 and answer.json()["status"] == "invalid event"
    assert any(e.startswith(error) for e in answer.json()["errors"]), answer.json()
    assert httpx.get(f"{pager.url}/pages").json()["pages"] == []


def test_not_json_and_unknown_paths(pager: PagerSimulator) -> None:
    bad = httpx.post(pager.events_url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["errors"] == ["The body is not JSON."]
    assert httpx.post(f"{pager.url}/v1/enqueue", json=TRIGGER).status_code == 404


@pytest.mark.django_db
def test_the_console_pages_the_local_pager(pager: PagerSimulator) -> None:
    mission = MissionFactory()
    incident, _ = incident_open(actor=Actor.system("t"), kind="lost_comms", title="Lost comms", mission=mission)
    with override_settings(PAGERDUTY_EVENTS_URL=pager.events_url, PAGERDUTY_ROUTING_KEY="demo-routing-key"):
        message = page_enqueue(incident_id=incident.pk, event_action="trigger", actor=Actor.system("t"))
        assert message is not None and page_deliver(message_id=message.pk)
    assert PagerMessage.objects.get(pk=message.pk).status == "sent"
    (page,) = pager.received()
    assert (
        page["summary"].startswith(f"INC-{incident.pk} Lost comms")
        and page["dedup_key"] == f"tms-incident-{incident.pk}"
    )
