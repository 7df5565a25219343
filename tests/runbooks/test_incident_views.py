"""On-call console: incident page, runbook step actions, and the role check on every action."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from missions.choices import ExceptionKind, MissionStatus
from missions.events import Actor
from missions.models import AuditEvent
from missions.services import mission_exception_report
from runbooks import engine
from runbooks.choices import IncidentStatus, StepStatus
from runbooks.detection import incident_from_exception
from runbooks.models import Incident, StepRun
from tests.conftest import verified_client
from tests.factories import MissionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident() -> Incident:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    exc = mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.EMERGENCY_STOP, actor=Actor.for_carrier(mission.carrier)
    )
    found = incident_from_exception(exception_id=exc.pk)
    assert found is not None
    engine.runbook_advance(run_id=found.run.pk)
    return found


def waiting_manual_step(incident: Incident) -> StepRun:
    return StepRun.objects.filter(run__incident=incident, status=StepStatus.WAITING).order_by("step__position").first()


def actions(incident: Incident) -> list[tuple[str, dict[str, Any]]]:
    step = waiting_manual_step(incident)
    return [
        (reverse("runbooks:incident_acknowledge", args=[incident.pk]), {}),
        (reverse("runbooks:incident_mitigate", args=[incident.pk]), {}),
        (reverse("runbooks:incident_resolve", args=[incident.pk]), {}),
        (reverse("runbooks:incident_close", args=[incident.pk]), {"review": "r"}),
        (reverse("runbooks:incident_note", args=[incident.pk]), {"text": "hello"}),
        (reverse("runbooks:incident_page", args=[incident.pk]), {}),
        (reverse("runbooks:step_confirm", args=[incident.pk, step.pk]), {}),
        (reverse("runbooks:step_run", args=[incident.pk, step.pk]), {}),
        (reverse("runbooks:step_skip", args=[incident.pk, step.pk]), {"reason": "x"}),
    ]


@pytest.mark.parametrize("persona", ["readonly", "dispatcher", "sla_manager", "outsider"])
def test_every_incident_action_needs_the_on_call_role(persona: str, incident: Incident, request: Any) -> None:
    user: User = request.getfixturevalue(persona)
    client = verified_client(user)
    before = AuditEvent.objects.count()
    for url, data in actions(incident):
        assert client.post(url, data).status_code == 403, url
    assert AuditEvent.objects.count() == before
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.TRIGGERED


def test_on_call_runs_the_incident_from_the_page(
    oncall: User, incident: Incident, django_capture_on_commit_callbacks: Any
) -> None:
    client = verified_client(oncall)
    page = client.get(reverse("runbooks:incident_detail", args=[incident.pk]))
    assert page.status_code == 200
    assert b"Collision avoidance or emergency stop" in page.content
    assert b"Confirm step 4" in page.content

    client.post(reverse("runbooks:incident_acknowledge", args=[incident.pk]), {"note": "on it"})
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ACKNOWLEDGED and incident.assignee == oncall

    step = waiting_manual_step(incident)
    with django_capture_on_commit_callbacks(execute=True):  # the confirmation moves the runbook on
        client.post(reverse("runbooks:step_confirm", args=[incident.pk, step.pk]), {"note": "scene safe"})
    step.refresh_from_db()
    assert step.status == StepStatus.DONE and step.actor_label == "oncall"
    # A manual step confirmed twice: refused with a message, nothing changes.
    response = client.post(reverse("runbooks:step_confirm", args=[incident.pk, step.pk]), follow=True)
    assert b"already done" in response.content

    skip = waiting_manual_step(incident)
    response = client.post(reverse("runbooks:step_skip", args=[incident.pk, skip.pk]), {"reason": " "}, follow=True)
    assert b"needs a reason" in response.content
    client.post(reverse("runbooks:step_skip", args=[incident.pk, skip.pk]), {"reason": "carrier cleared it"})
    skip.refresh_from_db()
    assert skip.status == StepStatus.SKIPPED and skip.reason == "carrier cleared it"

    client.post(reverse("runbooks:incident_note", args=[incident.pk]), {"text": "called the carrier"})
    assert AuditEvent.objects.filter(incident_id=incident.pk, action="incident.note", actor_label="oncall").exists()

    client.post(reverse("runbooks:incident_resolve", args=[incident.pk]))
    response = client.post(reverse("runbooks:incident_close", args=[incident.pk]), {"review": ""}, follow=True)
    assert b"closed with a post-incident review" in response.content
    page = client.get(reverse("runbooks:incident_detail", args=[incident.pk]))
    assert b"Post-incident review: INC-" in page.content  # the prefilled template
    client.post(reverse("runbooks:incident_close", args=[incident.pk]), {"review": "Root cause: sensor glare."})
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.CLOSED and incident.review == "Root cause: sensor glare."
    actors = set(
        AuditEvent.objects.filter(incident_id=incident.pk, actor_kind="user").values_list("actor_label", flat=True)
    )
    assert actors == {"oncall"}


def test_resolve_on_closed_incident_is_refused(oncall: User, incident: Incident) -> None:
    client = verified_client(oncall)
    client.post(reverse("runbooks:incident_resolve", args=[incident.pk]))
    client.post(reverse("runbooks:incident_close", args=[incident.pk]), {"review": "done"})
    response = client.post(reverse("runbooks:incident_resolve", args=[incident.pk]), follow=True)
    assert b"cannot move from" in response.content
    assert Incident.objects.get(pk=incident.pk).status == IncidentStatus.CLOSED


def test_incident_list_shows_open_incidents(readonly: User, incident: Incident) -> None:
    response = verified_client(readonly).get(reverse("runbooks:incident_list") + "?status=open")
    assert response.status_code == 200
    assert f"INC-{incident.pk}".encode() in response.content
