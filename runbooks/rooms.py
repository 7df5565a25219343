"""The live rooms of the incident pages (declared with ``missions.live`` from ``RunbooksConfig.ready``)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from missions.live import SubjectNotFound, room_register
from missions.models import AuditEvent
from runbooks.models import Incident


def incident_groups(pk: int) -> tuple[str, ...]:
    if not Incident.objects.filter(pk=pk).exists():
        raise SubjectNotFound("incident")
    return (f"incident.{pk}",)


def incident_events(pk: int) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(incident_id=pk).order_by("id")


def incident_list_events(_pk: int) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(Q(subject_type="incident") | Q(incident_id__isnull=False)).order_by("id")


def register() -> None:
    room_register("incident", resolve=incident_groups, events=incident_events)
    room_register("incidents", resolve=lambda _pk: ("incidents",), events=incident_list_events)
