"""The partner API's SLA endpoint: a carrier reads its own SLA figures (mounted at /api/v1/sla)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from missions.partner.api.views import COMMON_READ, PartnerView, problems
from sla.selectors import carrier_sla_summary


class SlaSummaryView(PartnerView):
    """The caller's own SLA figures: SLIs against targets, error budgets, breaches, credits."""

    required_scopes = {"GET": "missions:read"}

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **problems(*COMMON_READ)}, operation_id="sla_summary")
    def get(self, request: Request) -> Response:
        return Response(carrier_sla_summary(self.carrier.pk))
