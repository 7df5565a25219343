"""Incident pages: list, detail with its timeline, acknowledge and resolve (thin)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.forms import IncidentActionForm
from missions.models import AuditEvent
from missions.views import last_event_id, paginate, run_action
from runbooks.choices import IncidentSeverity, IncidentStatus
from runbooks.models import Incident
from runbooks.services import incident_transition
from runbooks.transitions import INCIDENT_OPEN, INCIDENT_TRANSITIONS
from tms_console.permissions import console_permission_required
from tms_console.roles import RESPOND_INCIDENTS, VIEW_CONSOLE, perm

view_required = console_permission_required(VIEW_CONSOLE)
respond_required = console_permission_required(RESPOND_INCIDENTS)


@view_required
def incident_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status != "open" and status not in IncidentStatus.values:
        status = ""
    incidents = Incident.objects.select_related("mission", "carrier", "assignee").order_by("-triggered_at", "-id")
    if status == "open":
        incidents = incidents.filter(status__in=INCIDENT_OPEN)
    elif status:
        incidents = incidents.filter(status=status)
    context = {
        "nav": "incidents",
        "page": paginate(request, incidents),
        "status": status,
        "statuses": IncidentStatus.choices,
        "filtered": bool(status),
        "last_event_id": AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0,
    }
    return render(request, "runbooks/incident_list.html", context)


@view_required
def incident_detail(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident.objects.select_related("mission__shipment", "carrier", "assignee"), pk=pk)
    timeline = list(AuditEvent.objects.filter(incident_id=incident.pk).select_related("actor_user").order_by("id"))
    allowed = INCIDENT_TRANSITIONS.get(incident.status, frozenset())
    context = {
        "nav": "incidents",
        "incident": incident,
        "timeline": timeline,
        "last_event_id": last_event_id(timeline),
        "can_respond": request.user.has_perm(perm(RESPOND_INCIDENTS)),
        "can_acknowledge": IncidentStatus.ACKNOWLEDGED in allowed,
        "can_resolve": IncidentStatus.RESOLVED in allowed,
        "severities": IncidentSeverity,
    }
    return render(request, "runbooks/incident_detail.html", context)


def _move(request: HttpRequest, pk: int, to_status: str, done: str) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    form = IncidentActionForm(request.POST)
    note = form.cleaned_data.get("note", "") if form.is_valid() else ""
    run_action(
        request,
        lambda: incident_transition(
            incident_id=incident.pk, to_status=to_status, actor=Actor.for_user(request.user), note=note
        ),
        f"INC-{incident.pk} {done}.",
    )
    return HttpResponseRedirect(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk}))


@require_POST
@respond_required
def incident_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, IncidentStatus.ACKNOWLEDGED, "acknowledged")


@require_POST
@respond_required
def incident_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, IncidentStatus.RESOLVED, "resolved")
