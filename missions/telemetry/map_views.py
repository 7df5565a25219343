"""Console views of the telemetry pipeline: the live map page and a mission's telemetry series (JSON)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.templatetags.static import static

from missions.choices import AutonomyMode, MissionStatus
from missions.models import Mission
from missions.telemetry.map_state import carrier_names, mission_telemetry_series
from missions.transitions import MISSION_ACTIVE
from tms_console.permissions import console_permission_required
from tms_console.roles import VIEW_CONSOLE

view_required = console_permission_required(VIEW_CONSOLE)


@view_required
def live_map(request: HttpRequest) -> HttpResponse:
    statuses = [(value, MissionStatus(value).label) for value in MissionStatus.values if value in MISSION_ACTIVE]
    return render(
        request,
        "missions/map.html",
        {
            "nav": "map",
            # plotly.js appends "<name>.json" (usa_110m) to this directory URL.
            "topojson_url": static("vendor/topojson/"),
            "frame_seconds": settings.LIVEMAP_FRAME_SECONDS,
            "at_risk_margin_minutes": settings.LIVEMAP_AT_RISK_MARGIN_MINUTES,
            # The socket sends raw choice values; the page shows these labels instead.
            "livemap_labels": {"status": dict(MissionStatus.choices), "mode": dict(AutonomyMode.choices)},
            "filter_statuses": statuses,
            "filter_modes": AutonomyMode.choices,
            "filter_carriers": carrier_names(),
        },
    )


@view_required
def mission_telemetry(request: HttpRequest, pk: int) -> JsonResponse:
    """Track and chart series of one mission (the 1 Hz samples); ``?since=<ISO 8601>`` for increments."""
    mission = get_object_or_404(Mission, pk=pk)
    since = None
    raw = request.GET.get("since", "")
    if raw:
        try:
            since = datetime.fromisoformat(raw)
        except ValueError:
            return JsonResponse({"error": "since: not an ISO 8601 timestamp"}, status=400)
        if since.tzinfo is None:
            return JsonResponse({"error": "since: must carry a UTC offset"}, status=400)
    return JsonResponse(mission_telemetry_series(mission_id=mission.pk, since=since))
