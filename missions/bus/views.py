"""The console's operations page for the event bus."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from missions.bus.selectors import bus_status, refusals
from tms_console.pages import paginate
from tms_console.permissions import console_permission_required
from tms_console.roles import VIEW_CONSOLE


@console_permission_required(VIEW_CONSOLE)
def bus_overview(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "missions/bus.html",
        {"nav": "incidents", "status": bus_status(), "page": paginate(request, refusals())},
    )
