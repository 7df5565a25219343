"""Console pages for evidence: a mission's attestations, re-verified, and its bundle download."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from missions.evidence import selectors, services
from missions.models import Mission
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_SLA, VIEW_CONSOLE


@console_permission_required(VIEW_CONSOLE)
def mission_evidence(request: HttpRequest, pk: int) -> HttpResponse:
    mission = get_object_or_404(Mission.objects.select_related("shipment", "carrier"), pk=pk)
    checkpoint = selectors.checkpoint_latest()
    context = {
        "nav": "missions",
        "mission": mission,
        "attestation_rows": selectors.mission_attestations(mission.pk),
        "checkpoint": checkpoint,
        "checkpoint_root": bytes(checkpoint.root_hash).hex() if checkpoint else "",
    }
    return render(request, "missions/evidence_mission.html", context)


@console_permission_required(VIEW_CONSOLE)
def mission_evidence_bundle(request: HttpRequest, pk: int) -> HttpResponse:
    mission = get_object_or_404(Mission, pk=pk)
    try:
        data = services.evidence_bundle_for_mission(mission.pk)
    except DomainError as exc:
        return render(
            request,
            "missions/evidence_mission.html",
            {"nav": "missions", "mission": mission, "attestation_rows": [], "bundle_error": exc.message},
            status=409,
        )
    response = HttpResponse(data, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="evidence-mission-{mission.pk}.json"'
    return response


@console_permission_required(MANAGE_SLA)
def breach_evidence_bundle(request: HttpRequest, pk: int) -> HttpResponse:
    """The breach's verdict bundle, for the dispute step of the SLA breach runbook."""
    try:
        data = services.evidence_bundle_for_breach(pk)
    except DomainError as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain; charset=utf-8")
    response = HttpResponse(data, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="evidence-sla-breach-{pk}.json"'
    return response
