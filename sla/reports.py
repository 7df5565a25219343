"""Reads of what the SLA engine stored: measurements, comparisons, summaries, breaches, the credit ledger.

The SLIs themselves are computed in ``sla.selectors``; these functions only read their results.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from django.db.models import Count, Max, OuterRef, QuerySet, Subquery, Sum

from sla.choices import BreachStatus
from sla.models import Breach, CreditEntry, SLIMeasurement
from sla.selectors import contract_in_force
from sla.sli import month_start, sli_meets


def measurements_latest(carrier_id: int) -> QuerySet[SLIMeasurement]:
    """The measurements of the carrier's most recent evaluation (one per SLI and window)."""
    last = SLIMeasurement.objects.filter(carrier_id=carrier_id).aggregate(at=Max("computed_at"))["at"]
    return SLIMeasurement.objects.filter(carrier_id=carrier_id, computed_at=last).order_by("sli", "window")


def measurements_series(
    carrier_id: int, *, window: str, since: datetime, slis: Iterable[str] | None = None
) -> QuerySet[SLIMeasurement]:
    qs = SLIMeasurement.objects.filter(carrier_id=carrier_id, window=window, computed_at__gte=since)
    if slis is not None:
        qs = qs.filter(sli__in=list(slis))
    return qs.order_by("computed_at", "id")


def sli_comparison(window: str) -> list[dict[str, Any]]:
    """Every carrier's latest value of every SLI over ``window``, one row per carrier (two queries)."""
    latest = (
        SLIMeasurement.objects.filter(carrier_id=OuterRef("carrier_id"))
        .order_by()
        .values("carrier_id")
        .annotate(m=Max("computed_at"))
        .values("m")
    )
    rows: dict[int, dict[str, Any]] = {}
    for m in (
        SLIMeasurement.objects.filter(window=window, computed_at=Subquery(latest))
        .select_related("carrier")
        .order_by("carrier__name", "sli")
    ):
        row = rows.setdefault(m.carrier_id, {"carrier_id": m.carrier_id, "carrier": m.carrier.name, "slis": {}})
        row["slis"][m.sli] = {
            "value": None if m.value is None else float(m.value),
            "target": None if m.target is None else float(m.target),
            "unit": m.unit,
            "total": m.total,
            "met": None if m.target is None else sli_meets(m.sli, m.value, m.target),
            "budget_remaining_pct": None if m.budget_remaining_pct is None else float(m.budget_remaining_pct),
        }
    return list(rows.values())


def carrier_sla_summary(carrier_id: int) -> dict[str, Any]:
    """What a carrier may read about itself: current SLIs vs targets, budgets, breaches, credits.

    Shaped for the partner API (``/api/v1/``): plain JSON types only.
    """
    contract = contract_in_force(carrier_id, datetime.now(tz=UTC).date())
    slis: dict[str, dict[str, Any]] = {}
    for m in measurements_latest(carrier_id):
        slis.setdefault(m.sli, {})[m.window] = {
            "value": None if m.value is None else str(m.value),
            "unit": m.unit,
            "target": None if m.target is None else str(m.target),
            "good": m.good,
            "total": m.total,
            "budget_remaining_pct": None if m.budget_remaining_pct is None else str(m.budget_remaining_pct),
            "window_start": m.window_start.isoformat(),
            "window_end": m.window_end.isoformat(),
            "computed_at": m.computed_at.isoformat(),
        }
    breaches = Breach.objects.filter(carrier_id=carrier_id).order_by("-period_start", "-id")[:50]
    credits = (
        CreditEntry.objects.filter(carrier_id=carrier_id)
        .values("month")
        .annotate(amount_usd=Sum("amount_usd"), entries=Count("id"))
        .order_by("-month")[:24]
    )
    return {
        "carrier_id": carrier_id,
        "contract": None
        if contract is None
        else {
            "version": contract.version,
            "effective_from": contract.effective_from.isoformat(),
            "effective_to": contract.effective_to.isoformat() if contract.effective_to else None,
        },
        "slis": slis,
        "breaches": [
            {
                "id": b.pk,
                "sli": b.sli,
                "period_start": b.period_start.isoformat(),
                "measured": str(b.measured),
                "target": str(b.target),
                "status": b.status,
            }
            for b in breaches
        ],
        "credits": [
            {"month": c["month"].isoformat(), "amount_usd": str(c["amount_usd"]), "entries": c["entries"]}
            for c in credits
        ],
    }


def breaches_list(*, carrier_id: int | None = None, status: str | None = None) -> QuerySet[Breach]:
    qs = Breach.objects.select_related("carrier", "decided_by")
    if carrier_id:
        qs = qs.filter(carrier_id=carrier_id)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-period_start", "-id")


def breaches_open_count() -> int:
    return Breach.objects.filter(status=BreachStatus.PROPOSED).count()


def ledger_entries(*, carrier_id: int | None = None, month: date | None = None) -> QuerySet[CreditEntry]:
    qs = CreditEntry.objects.select_related("carrier", "breach")
    if carrier_id:
        qs = qs.filter(carrier_id=carrier_id)
    if month:
        qs = qs.filter(month=month_start(month))
    return qs.order_by("month", "id")
