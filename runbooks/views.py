"""Incident pages: list, detail with runbook progress and timeline, on-call actions (thin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import AuditEvent
from runbooks import engine
from runbooks.choices import IncidentSeverity, IncidentStatus
from runbooks.forms import IncidentActionForm
from runbooks.models import Incident, StepRun
from runbooks.ota import ota_fleet_resume, ota_resume_state
from runbooks.selectors import incident_review_template, incident_steps, incident_telemetry_window
from runbooks.services import incident_note_add, incident_repage, incident_transition
from runbooks.transitions import INCIDENT_OPEN, INCIDENT_TRANSITIONS
from tms_console.pages import last_event_id, paginate, run_action
from tms_console.permissions import console_permission_required
from tms_console.roles import RESPOND_INCIDENTS, VIEW_CONSOLE, perm
from tms_console.trace_pages import trace_card

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
    incident = get_object_or_404(
        Incident.objects.select_related("mission__shipment", "carrier", "assignee", "vehicle"), pk=pk
    )
    timeline = list(AuditEvent.objects.filter(incident_id=incident.pk).select_related("actor_user").order_by("id"))
    allowed = INCIDENT_TRANSITIONS.get(incident.status, frozenset())
    run = getattr(incident, "run", None)
    context = {
        "nav": "incidents",
        "incident": incident,
        "timeline": timeline,
        "last_event_id": last_event_id(timeline),
        "can_respond": request.user.has_perm(perm(RESPOND_INCIDENTS)),
        "can_acknowledge": IncidentStatus.ACKNOWLEDGED in allowed,
        "can_mitigate": IncidentStatus.MITIGATED in allowed,
        "can_resolve": IncidentStatus.RESOLVED in allowed,
        "can_close": IncidentStatus.CLOSED in allowed,
        "is_open": incident.status != IncidentStatus.CLOSED,
        "severities": IncidentSeverity,
        "run": run,
        "steps": incident_steps(incident=incident),
        "review_template": incident.review or incident_review_template(incident=incident),
        "pages": incident.pages.order_by("id"),
        # The mission's trace that led here (pinned when it opened), the incident's own, and the telemetry window.
        "pinned_trace": trace_card(incident.pinned_traceparent, began_at=incident.triggered_at),
        "incident_trace": trace_card(incident.traceparent, began_at=incident.triggered_at),
        "telemetry": incident_telemetry_window(incident=incident),
        # An OTA-failure incident: which vehicles run verified software, and whether the fleet may resume.
        "ota": ota_resume_state(incident=incident),
    }
    return render(request, "runbooks/incident_detail.html", context)


def _back(pk: int) -> HttpResponse:
    return HttpResponseRedirect(reverse("runbooks:incident_detail", kwargs={"pk": pk}))


def _note(request: HttpRequest) -> str:
    form = IncidentActionForm(request.POST)
    return form.cleaned_data.get("note", "") if form.is_valid() else ""


def _move(request: HttpRequest, pk: int, to_status: str, done: str, review: str = "") -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    note = _note(request)
    run_action(
        request,
        lambda: incident_transition(
            incident_id=incident.pk, to_status=to_status, actor=Actor.for_user(request.user), note=note, review=review
        ),
        f"INC-{incident.pk} {done}.",
    )
    return _back(incident.pk)


@require_POST
@respond_required
def incident_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, IncidentStatus.ACKNOWLEDGED, "acknowledged")


@require_POST
@respond_required
def incident_mitigate(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, IncidentStatus.MITIGATED, "marked mitigated")


@require_POST
@respond_required
def incident_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, IncidentStatus.RESOLVED, "resolved")


@require_POST
@respond_required
def incident_close(request: HttpRequest, pk: int) -> HttpResponse:
    review = request.POST.get("review", "").strip()[:20000]
    return _move(request, pk, IncidentStatus.CLOSED, "closed with its review", review=review)


@require_POST
@respond_required
def incident_note(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    text = request.POST.get("text", "")[:5000]
    run_action(
        request,
        lambda: incident_note_add(incident_id=incident.pk, actor=Actor.for_user(request.user), text=text),
        "Note added.",
    )
    return _back(incident.pk)


@require_POST
@respond_required
def incident_page_again(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    run_action(
        request,
        lambda: incident_repage(incident_id=incident.pk, actor=Actor.for_user(request.user)),
        "On-call paged again.",
    )
    return _back(incident.pk)


def _step_action(
    request: HttpRequest, pk: int, step_id: int, call: Callable[[StepRun, Actor], Any], done: str
) -> HttpResponse:
    step_run = get_object_or_404(StepRun.objects.select_related("step"), pk=step_id, run__incident_id=pk)
    actor = Actor.for_user(request.user)
    run_action(request, lambda: call(step_run, actor), f"Step {step_run.step.position} {done}.")
    return _back(pk)


@require_POST
@respond_required
def step_confirm(request: HttpRequest, pk: int, step_id: int) -> HttpResponse:
    note = _note(request)
    return _step_action(
        request, pk, step_id, lambda s, a: engine.step_confirm(step_run_id=s.pk, actor=a, note=note), "confirmed"
    )


@require_POST
@respond_required
def step_retry(request: HttpRequest, pk: int, step_id: int) -> HttpResponse:
    return _step_action(
        request, pk, step_id, lambda s, a: engine.step_retry(step_run_id=s.pk, actor=a), "queued to run"
    )


@require_POST
@respond_required
def step_skip(request: HttpRequest, pk: int, step_id: int) -> HttpResponse:
    reason = request.POST.get("reason", "")[:300]
    return _step_action(
        request, pk, step_id, lambda s, a: engine.step_skip(step_run_id=s.pk, actor=a, reason=reason), "skipped"
    )


@require_POST
@respond_required
def incident_ota_resume(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    note = _note(request)
    run_action(
        request,
        lambda: ota_fleet_resume(incident_id=incident.pk, actor=Actor.for_user(request.user), confirmation=note),
        f"INC-{incident.pk}: fleet resumed.",
    )
    return _back(incident.pk)
