"""SLA pages: the contract targets per carrier (read-only)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sla.models import Contract
from tms_console.pages import paginate
from tms_console.permissions import console_permission_required
from tms_console.roles import VIEW_CONSOLE


@console_permission_required(VIEW_CONSOLE)
def contract_list(request: HttpRequest) -> HttpResponse:
    contracts = Contract.objects.select_related("carrier").order_by("carrier__name", "-version")
    return render(request, "sla/contract_list.html", {"nav": "sla", "page": paginate(request, contracts)})
