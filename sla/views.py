"""SLA pages mounted under /sla/: the landing page (every carrier against its targets) and the contract terms."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from sla.choices import BreachStatus, WindowName
from sla.models import Breach, Contract
from sla.overview import carriers_sla, min_events, sli_columns, windows_menu
from tms_console.pages import paginate
from tms_console.permissions import console_permission_required
from tms_console.roles import VIEW_CONSOLE

view_required = console_permission_required(VIEW_CONSOLE)
DEFAULT_WINDOW = WindowName.D30


def window_from(request: HttpRequest, default: str = DEFAULT_WINDOW) -> str:
    """The ``?window=`` the engine reports (1h, 24h, 7d, 30d, month); anything else gives ``default``."""
    value = request.GET.get("window", default)
    return value if value in WindowName.values else default


@view_required
def overview(request: HttpRequest) -> HttpResponse:
    """The SLA landing page: each carrier's SLIs against target, error budget left and burn state."""
    if "page" in request.GET and "window" not in request.GET:
        # /sla/ was the paginated contract list: its old page links land on the contracts tab.
        return HttpResponseRedirect(f"{reverse('sla:contract_list')}?{request.GET.urlencode()}")
    window = window_from(request)
    rows = carriers_sla(window)
    return render(
        request,
        "sla/overview.html",
        {
            "nav": "sla",
            "window": window,
            "window_label": WindowName(window).label,
            "windows": windows_menu(),
            "rows": rows,
            "slis": sli_columns(),
            "alerts": [a for row in rows for a in row.alerts],
            "evaluated": any(row.evaluated_at for row in rows),
            "min_events": min_events(),
            "proposed": Breach.objects.filter(status=BreachStatus.PROPOSED).count(),
        },
    )


@view_required
def contract_list(request: HttpRequest) -> HttpResponse:
    """The contract terms: every version of every carrier's contract, with its targets and credit schedule."""
    contracts = Contract.objects.select_related("carrier").order_by("carrier__name", "-version")
    return render(request, "sla/contract_list.html", {"nav": "sla", "page": paginate(request, contracts)})
