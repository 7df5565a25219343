"""Contract terms the core's safety loops read (registered as the core's ``TermsSource``)."""

from __future__ import annotations

from datetime import date

from django.db.models import IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import BaseExpression

from missions.terms import terms_source_register
from sla.models import Contract


def _in_force(today: date) -> QuerySet[Contract]:
    return (
        Contract.objects.filter(effective_from__lte=today)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=today))
        .order_by("-version")
    )


class ContractTerms:
    def gap_seconds_sql(self, *, today: date) -> BaseExpression:
        rows = _in_force(today).filter(carrier_id=OuterRef("carrier_id")).values("telemetry_gap_seconds")[:1]
        return Subquery(rows, output_field=IntegerField())

    def recovery_timeout_seconds(self, *, carrier_id: int, today: date) -> int | None:
        return _in_force(today).filter(carrier_id=carrier_id).values_list("recovery_timeout_seconds", flat=True).first()

    def route_plan_required(self, *, carrier_id: int, today: date) -> bool | None:
        return _in_force(today).filter(carrier_id=carrier_id).values_list("route_plan_required", flat=True).first()


def register() -> None:
    terms_source_register(ContractTerms())
