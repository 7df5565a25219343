"""Every legal and illegal move of the tender, mission and incident state machines."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from missions.choices import MissionStatus, TenderStatus
from missions.models import AuditEvent, Mission, Tender
from missions.services import mission_transition, tender_transition
from missions.transitions import MISSION_TRANSITIONS, TENDER_TRANSITIONS
from runbooks.choices import IncidentStatus
from runbooks.models import Incident
from runbooks.services import incident_transition
from runbooks.transitions import INCIDENT_TRANSITIONS
from tests.factories import IncidentFactory, MissionFactory, TenderFactory
from tms_console.domain import IllegalTransition

REASON = "test reason"

TENDER_PAIRS = list(itertools.product(TenderStatus.values, TenderStatus.values))
MISSION_PAIRS = list(itertools.product(MissionStatus.values, MissionStatus.values))
INCIDENT_PAIRS = list(itertools.product(IncidentStatus.values, IncidentStatus.values))


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "target"), TENDER_PAIRS)
def test_tender_transition(current: str, target: str, system_actor: Any) -> None:
    tender = TenderFactory(status=current)
    events_before = AuditEvent.objects.count()
    if target in TENDER_TRANSITIONS[current]:
        tender_transition(tender_id=tender.pk, to_status=target, actor=system_actor, reason=REASON)
        tender.refresh_from_db()
        assert tender.status == target
        event = AuditEvent.objects.filter(subject_type="tender", subject_id=tender.pk).latest("id")
        assert event.before == {"status": current}
        assert event.after == {"status": target}
        assert event.correlation_id == tender.correlation_id
    else:
        with pytest.raises(IllegalTransition) as err:
            tender_transition(tender_id=tender.pk, to_status=target, actor=system_actor, reason=REASON)
        assert f"from '{current}' to '{target}'" in str(err.value)
        assert Tender.objects.get(pk=tender.pk).status == current
        assert AuditEvent.objects.count() == events_before


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "target"), MISSION_PAIRS)
def test_mission_transition(current: str, target: str, system_actor: Any) -> None:
    mission = MissionFactory(status=current)
    events_before = AuditEvent.objects.count()
    if target in MISSION_TRANSITIONS[current]:
        mission_transition(mission_id=mission.pk, to_status=target, actor=system_actor, reason=REASON)
        mission.refresh_from_db()
        assert mission.status == target
        event = AuditEvent.objects.filter(subject_type="mission", subject_id=mission.pk).latest("id")
        assert (event.before, event.after) == ({"status": current}, {"status": target})
        assert event.mission_id == mission.pk
    else:
        with pytest.raises(IllegalTransition):
            mission_transition(mission_id=mission.pk, to_status=target, actor=system_actor, reason=REASON)
        assert Mission.objects.get(pk=mission.pk).status == current
        assert AuditEvent.objects.count() == events_before


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "target"), INCIDENT_PAIRS)
def test_incident_transition(current: str, target: str, system_actor: Any) -> None:
    incident = IncidentFactory(status=current)
    events_before = AuditEvent.objects.count()
    if target in INCIDENT_TRANSITIONS[current]:
        incident_transition(incident_id=incident.pk, to_status=target, actor=system_actor, review="Review text")
        incident.refresh_from_db()
        assert incident.status == target
        event = AuditEvent.objects.filter(subject_type="incident", subject_id=incident.pk).latest("id")
        assert (event.before, event.after) == ({"status": current}, {"status": target})
        assert event.incident_id == incident.pk
    else:
        with pytest.raises(IllegalTransition):
            incident_transition(incident_id=incident.pk, to_status=target, actor=system_actor, review="Review")
        assert Incident.objects.get(pk=incident.pk).status == current
        assert AuditEvent.objects.count() == events_before


def test_every_status_has_a_row() -> None:
    assert set(TENDER_TRANSITIONS) == set(TenderStatus.values)
    assert set(MISSION_TRANSITIONS) == set(MissionStatus.values)
    assert set(INCIDENT_TRANSITIONS) == set(IncidentStatus.values)
