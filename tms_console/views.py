"""Console-wide pages: the dashboard, a trace's waterfall and the health check."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from missions.choices import ShipmentStatus
from missions.models import Mission, Shipment
from missions.transitions import MISSION_ACTIVE
from tms_console.permissions import console_permission_required
from tms_console.roles import VIEW_CONSOLE, perm
from tms_console.trace_pages import trace_page
from tms_console.trace_store import is_trace_id


def dashboard(request: HttpRequest) -> HttpResponse:
    # A carrier's portal member signs in like everyone else and lands on their carrier's portal.
    if not request.user.has_perm(perm(VIEW_CONSOLE)):
        from missions.onboarding.selectors import member_of

        if member_of(request.user) is not None:
            return redirect("onboarding:portal")
    return _dashboard(request)


@permission_required(perm(VIEW_CONSOLE), raise_exception=True)
def _dashboard(request: HttpRequest) -> HttpResponse:
    from runbooks.models import Incident
    from runbooks.transitions import INCIDENT_OPEN

    context = {
        "open_shipments": Shipment.objects.filter(status__in=[ShipmentStatus.OPEN, ShipmentStatus.TENDERING]).count(),
        "active_missions": Mission.objects.filter(status__in=MISSION_ACTIVE).count(),
        "open_incidents": Incident.objects.filter(status__in=INCIDENT_OPEN).count(),
        "recent_missions": Mission.objects.select_related("shipment", "carrier").order_by("-id")[:8],
    }
    return render(request, "dashboard.html", context)


@console_permission_required(VIEW_CONSOLE)
def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    """One trace from the span store as a waterfall, with the spans of other traces that link to it."""
    if not is_trace_id(trace_id):
        raise Http404("not a trace id")
    return render(request, "traces/detail.html", {"trace": trace_page(trace_id)})


def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
