"""Console-wide pages: the dashboard and the health check."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from missions.choices import ShipmentStatus
from missions.models import Mission, Shipment
from missions.transitions import MISSION_ACTIVE
from tms_console.roles import VIEW_CONSOLE, perm


@permission_required(perm(VIEW_CONSOLE), raise_exception=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    from runbooks.models import Incident
    from runbooks.transitions import INCIDENT_OPEN

    context = {
        "open_shipments": Shipment.objects.filter(status__in=[ShipmentStatus.OPEN, ShipmentStatus.TENDERING]).count(),
        "active_missions": Mission.objects.filter(status__in=MISSION_ACTIVE).count(),
        "open_incidents": Incident.objects.filter(status__in=INCIDENT_OPEN).count(),
        "recent_missions": Mission.objects.select_related("shipment", "carrier").order_by("-id")[:8],
    }
    return render(request, "dashboard.html", context)


def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
