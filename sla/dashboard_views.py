"""SLA dashboards: SLI against target over time, error-budget burn-down, carrier comparison,
breaches (confirm / dispute) and the credit ledger with its CSV and JSON downloads.

Thin views: selectors read, ``sla.services.breach_decide`` writes. Charts are
drawn by plotly.js (vendored) from the JSON endpoints, which the page polls
so the figures follow each evaluation.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import Carrier
from sla import export
from sla.choices import BreachStatus, SLIName, WindowName
from sla.models import Breach, BurnRateAlert
from sla.reports import (
    breaches_list,
    carrier_sla_summary,
    ledger_entries,
    measurements_latest,
    measurements_series,
    sli_comparison,
)
from sla.selectors import contract_in_force
from sla.services import breach_decide
from tms_console.pages import paginate, run_action
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_SLA, VIEW_CONSOLE, perm

view_required = console_permission_required(VIEW_CONSOLE)
manage_required = console_permission_required(MANAGE_SLA)

# How far back each window's chart looks.
HISTORY = {
    WindowName.H1: timedelta(hours=6),
    WindowName.H24: timedelta(days=2),
    WindowName.D7: timedelta(days=14),
    WindowName.D30: timedelta(days=30),
    WindowName.MONTH: timedelta(days=31),
}


def _window(request: HttpRequest, default: str = WindowName.D30) -> str:
    value = request.GET.get("window", default)
    return value if value in WindowName.values else default


@view_required
def overview(request: HttpRequest) -> HttpResponse:
    window = _window(request)
    return render(
        request,
        "sla/dashboard.html",
        {
            "nav": "sla",
            "window": window,
            "windows": WindowName.choices,
            "rows": [
                {**row, "cells": [row["slis"].get(value) for value in SLIName.values]} for row in sli_comparison(window)
            ],
            "slis": SLIName.choices,
            "proposed": Breach.objects.filter(status=BreachStatus.PROPOSED).count(),
            "alerts": BurnRateAlert.objects.filter(resolved_at__isnull=True).select_related("carrier")[:20],
        },
    )


@view_required
def comparison_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"window": _window(request), "rows": sli_comparison(_window(request))})


@view_required
def carrier_dashboard(request: HttpRequest, carrier_id: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=carrier_id)
    window = _window(request)
    return render(
        request,
        "sla/dashboard_carrier.html",
        {
            "nav": "sla",
            "carrier": carrier,
            "window": window,
            "windows": WindowName.choices,
            "contract": contract_in_force(carrier.pk, timezone.now().date()),
            "latest": measurements_latest(carrier.pk).filter(window=window),
            "alerts": BurnRateAlert.objects.filter(carrier=carrier).order_by("-fired_at")[:10],
            "breaches": breaches_list(carrier_id=carrier.pk)[:10],
        },
    )


@view_required
def carrier_series(request: HttpRequest, carrier_id: int) -> JsonResponse:
    """Chart data: per SLI, value and target over time for one window, plus the month's budget burn-down."""
    carrier = get_object_or_404(Carrier, pk=carrier_id)
    window = _window(request)
    since = timezone.now() - HISTORY[WindowName(window)]
    series: dict[str, dict[str, list[Any]]] = {}
    for m in measurements_series(carrier.pk, window=window, since=since):
        s = series.setdefault(m.sli, {"t": [], "value": [], "target": [], "budget": [], "unit": [m.unit]})
        s["t"].append(m.computed_at.isoformat())
        s["value"].append(None if m.value is None else float(m.value))
        s["target"].append(None if m.target is None else float(m.target))
        s["budget"].append(None if m.budget_remaining_pct is None else float(m.budget_remaining_pct))
    burn: dict[str, dict[str, list[Any]]] = {}
    month_since = timezone.now() - HISTORY[WindowName.MONTH]
    for m in measurements_series(carrier.pk, window=WindowName.MONTH, since=month_since):
        b = burn.setdefault(m.sli, {"t": [], "budget": []})
        b["t"].append(m.computed_at.isoformat())
        b["budget"].append(None if m.budget_remaining_pct is None else float(m.budget_remaining_pct))
    labels = dict(SLIName.choices)
    return JsonResponse({"window": window, "labels": labels, "series": series, "burn_down": burn})


@view_required
def carrier_summary_json(request: HttpRequest, carrier_id: int) -> JsonResponse:
    carrier = get_object_or_404(Carrier, pk=carrier_id)
    return JsonResponse(carrier_sla_summary(carrier.pk))


@view_required
def breach_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    qs = breaches_list(status=status if status in BreachStatus.values else None)
    return render(
        request,
        "sla/breach_list.html",
        {
            "nav": "sla",
            "page": paginate(request, qs),
            "status": status,
            "statuses": BreachStatus.choices,
            "can_decide": request.user.has_perm(perm(MANAGE_SLA)),
        },
    )


@view_required
def breach_detail(request: HttpRequest, pk: int) -> HttpResponse:
    breach = get_object_or_404(Breach.objects.select_related("carrier", "contract", "decided_by"), pk=pk)
    return render(
        request,
        "sla/breach_detail.html",
        {
            "nav": "sla",
            "breach": breach,
            "credits": breach.credit_entries.all(),
            "evidence_json": json.dumps(breach.evidence, indent=2, sort_keys=True),
            "can_decide": request.user.has_perm(perm(MANAGE_SLA)) and breach.status != BreachStatus.CONFIRMED,
        },
    )


@require_POST
@manage_required
def breach_decide_view(request: HttpRequest, pk: int) -> HttpResponse:
    decision = request.POST.get("decision", "")
    reason = request.POST.get("reason", "")[:2000]
    done = {"confirm": "Breach confirmed; the credit was added to the ledger.", "dispute": "Breach disputed."}
    run_action(
        request,
        lambda: breach_decide(breach_id=pk, decision=decision, actor=Actor.for_user(request.user), reason=reason),
        done.get(decision, "Done."),
    )
    return redirect("sla_dashboard:breach_detail", pk=pk)


@view_required
def credit_ledger(request: HttpRequest) -> HttpResponse:
    carrier_id = request.GET.get("carrier", "")
    qs = ledger_entries(carrier_id=int(carrier_id) if carrier_id.isdigit() else None)
    return render(
        request,
        "sla/dashboard_ledger.html",
        {
            "nav": "sla",
            "page": paginate(request, qs),
            "carriers": Carrier.objects.filter(credit_entries__isnull=False).distinct(),
            "carrier_id": carrier_id,
            "can_export": request.user.has_perm(perm(MANAGE_SLA)),
        },
    )


@manage_required
def ledger_download(request: HttpRequest, fmt: str) -> HttpResponse:
    carrier_id = request.GET.get("carrier", "")
    entries = ledger_entries(carrier_id=int(carrier_id) if carrier_id.isdigit() else None)
    stamp = timezone.now().strftime("%Y%m%d")
    if fmt == "csv":
        response = HttpResponse(export.ledger_csv(entries), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(export.ledger_json(entries), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="sla-credits-{stamp}.{fmt}"'
    return response
