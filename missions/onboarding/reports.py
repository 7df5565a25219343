"""Certification reports over the partner API, for the carrier's own tooling (scope ``certification:read``).

``GET /api/v1/certification/runs`` lists the calling carrier's runs, newest
first (smoke checks of the drift watch included, marked by ``kind``);
``GET /api/v1/certification/runs/<run>`` gives one run's report: what its
signed certificate states (carrier, contract version, every check with its
result, detail and hint) and its progress while it runs;
``.../certificate`` the signed certificate itself, the evidence bundle that
``tools/verify_evidence.py`` verifies offline. Another carrier's run is 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from missions.evidence import services as evidence_services
from missions.models import CertificationRun, CertificationStatus
from missions.onboarding.certification import certificate_record
from missions.partner.api.views import PartnerView, problems
from tms_console.problem import ProblemError

COMMON = (401, 403, 404, 429)


def _checks_done(run: CertificationRun) -> int:
    return sum(1 for c in run.checks if c.get("status") != "pending")


class CertificationRunSerializer(serializers.ModelSerializer[CertificationRun]):
    run = serializers.UUIDField(source="run_key", help_text="The run's id in these URLs")
    checks_done = serializers.SerializerMethodField()
    checks_total = serializers.SerializerMethodField()
    report_url = serializers.SerializerMethodField()

    class Meta:
        model = CertificationRun
        fields = [
            "run",
            "kind",
            "status",
            "contract_version",
            "sandbox_url",
            "created_at",
            "started_at",
            "finished_at",
            "checks_done",
            "checks_total",
            "report_url",
        ]

    def get_checks_done(self, run: CertificationRun) -> int:
        return _checks_done(run)

    def get_checks_total(self, run: CertificationRun) -> int:
        return len(run.checks)

    def get_report_url(self, run: CertificationRun) -> str:
        return reverse("certification:report", args=[run.run_key])


class CertificationRunListView(PartnerView, generics.ListAPIView[CertificationRun]):
    """The calling carrier's certification runs, newest first."""

    serializer_class = CertificationRunSerializer
    required_scopes = {"GET": "certification:read"}

    def get_queryset(self) -> QuerySet[CertificationRun]:
        return CertificationRun.objects.filter(carrier=self.carrier).order_by("-created_at", "-id")

    @extend_schema(
        operation_id="certification_runs_list",
        tags=["certification"],
        responses={200: CertificationRunSerializer(many=True), **problems(400, *COMMON)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def _own_run(view: PartnerView, run_key: uuid.UUID) -> CertificationRun:
    run = CertificationRun.objects.select_related("carrier").filter(run_key=run_key, carrier=view.carrier).first()
    if run is None:  # another carrier's run is "not found", never "forbidden"
        raise ProblemError(404, "not-found", "No such certification run for this client.")
    return run


class CertificationReportView(PartnerView):
    """One run's report: what its certificate states, and its progress while it runs."""

    required_scopes = {"GET": "certification:read"}

    @extend_schema(
        operation_id="certification_run_report",
        tags=["certification"],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="the run's report"), **problems(*COMMON)},
    )
    def get(self, request: Request, run_key: uuid.UUID) -> Response:
        run = _own_run(self, run_key)
        report = certificate_record(run)
        report["kind"] = run.kind
        report["run"] = str(run.run_key)
        report["progress"] = {"checksDone": _checks_done(run), "checksTotal": len(run.checks)}
        finished = run.status in (CertificationStatus.PASSED, CertificationStatus.FAILED)
        report["certificateUrl"] = (
            reverse("certification:certificate", args=[run.run_key]) if finished and run.kind == "full" else None
        )
        return Response(report)


class CertificationCertificateView(PartnerView):
    """A finished run's signed certificate: the evidence bundle, verifiable offline."""

    required_scopes = {"GET": "certification:read"}

    @extend_schema(
        operation_id="certification_run_certificate",
        tags=["certification"],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="evidence bundle v1"),
            **problems(*COMMON, 409),
        },
    )
    def get(self, request: Request, run_key: uuid.UUID) -> HttpResponse:
        run = _own_run(self, run_key)
        if run.kind != "full" or run.status not in (CertificationStatus.PASSED, CertificationStatus.FAILED):
            raise ProblemError(409, "not-finished", f"Run {run.run_key} is {run.status}: it has no certificate yet.")
        data = evidence_services.evidence_bundle_for_certification(run.pk)
        response = HttpResponse(data, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="certificate-{run.carrier.slug}-{run.run_key}.json"'
        return response
