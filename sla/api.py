"""The partner API's SLA endpoint: a carrier reads its own SLA figures (mounted at /api/v1/sla)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from missions.partner.api.views import PartnerView, problems
from sla.choices import BreachStatus, SLIName, WindowName
from sla.reports import carrier_sla_summary

# Decimals travel as strings (``str(Decimal)``), so no precision is lost on the way.
DECIMAL_TEXT = r"^-?[0-9]+(?:\.[0-9]+)?(?:E[-+]?[0-9]+)?$"


def _decimal(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(DECIMAL_TEXT, help_text="A decimal number as a string", **kwargs)


class SlaMeasurementSerializer(serializers.Serializer[dict[str, Any]]):
    """One SLI over one window, from the latest evaluation."""

    value = _decimal(allow_null=True)
    unit = serializers.CharField()
    target = _decimal(allow_null=True)
    good = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField()
    budget_remaining_pct = _decimal(allow_null=True)
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    computed_at = serializers.DateTimeField()


class SlaContractSerializer(serializers.Serializer[dict[str, Any]]):
    """The contract in force today."""

    version = serializers.IntegerField()
    effective_from = serializers.DateField()
    effective_to = serializers.DateField(allow_null=True, help_text="Exclusive; null when open-ended")


class SlaBreachSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    sli = serializers.ChoiceField(choices=SLIName.choices)
    period_start = serializers.DateField(help_text="First day of the billing month")
    measured = _decimal()
    target = _decimal()
    status = serializers.ChoiceField(choices=BreachStatus.choices)


class SlaCreditSerializer(serializers.Serializer[dict[str, Any]]):
    month = serializers.DateField(help_text="First day of the billed month")
    amount_usd = _decimal()
    entries = serializers.IntegerField()


class SlaSummarySerializer(serializers.Serializer[dict[str, Any]]):
    """The caller's SLIs by name and window, its last 50 breaches and 24 months of credits."""

    carrier_id = serializers.IntegerField()
    contract = SlaContractSerializer(allow_null=True)
    slis = serializers.DictField(
        child=serializers.DictField(child=SlaMeasurementSerializer()),
        help_text=f"By SLI ({', '.join(SLIName.values)}), then by window ({', '.join(WindowName.values)})",
    )
    breaches = SlaBreachSerializer(many=True)
    credits = SlaCreditSerializer(many=True)


class SlaSummaryView(PartnerView):
    """The caller's own SLA figures: SLIs against targets, error budgets, breaches, credits."""

    required_scopes = {"GET": "missions:read"}

    @extend_schema(responses={200: SlaSummarySerializer, **problems(401, 403, 429)}, operation_id="sla_summary")
    def get(self, request: Request) -> Response:
        return Response(carrier_sla_summary(self.carrier.pk))
