"""``/api/v1/missions/{id}/route-plans``: a carrier submits a signed route plan; reads its verified plans.

The body is a JSON envelope around the signed bytes: the artifact (base64 of the
exact bytes signed), the detached signature as ``cosign sign-blob --key``
writes it, and the artifact's declared SHA-256 digest and length. The envelope
is transport; the plan inside it is read only after its signature verified
(``missions.routeplans.artifact``). A refusal is a problem document whose
``type`` names the reason, and nothing is stored as verified.
docs/decisions/0024-signed-route-plans.md.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.core.validators import RegexValidator
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from missions.models import Mission, RoutePlan
from missions.partner.api.fields import StrictCharField, StrictIntegerField
from missions.partner.api.idempotency import idempotent
from missions.partner.api.serializers import ProblemSerializer
from missions.partner.api.views import COMMON_READ, IDEMPOTENCY_PARAMETER, PartnerView, problems
from missions.routeplans.artifact import MAX_ARTIFACT_BYTES, PLAN_TYPE, Reason, Submission
from missions.routeplans.selectors import plans_of_mission
from missions.routeplans.services import route_plan_submit
from tms_console.problem import PROBLEM_CONTENT_TYPE, problem_body

# Standard base64 with padding (RFC 4648 §4), as cosign writes signatures: every string the pattern
# admits decodes, so the schema and the server agree on what a 400 is.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
ARTIFACT_MAX_CHARS = (MAX_ARTIFACT_BYTES + 2) // 3 * 4


class RoutePlanSubmissionSerializer(serializers.Serializer[dict[str, Any]]):
    """A signed route plan: the exact bytes, their detached signature, digest and length."""

    artifact = StrictCharField(
        max_length=ARTIFACT_MAX_CHARS,
        validators=[RegexValidator(BASE64_PATTERN, message="Standard base64 with padding is required.")],
        help_text="Base64 (RFC 4648 §4, padded) of the exact bytes that were signed: a UTF-8 JSON route plan "
        f'(`{{"type": "{PLAN_TYPE}", "mission_id", "version", "valid_from", "valid_until", "waypoints"}}`), '
        f"at most {MAX_ARTIFACT_BYTES} bytes",
    )
    signature = StrictCharField(
        max_length=96,
        validators=[RegexValidator(BASE64_PATTERN, message="Standard base64 with padding is required.")],
        help_text="The output of `cosign sign-blob --key cosign.key <artifact>`: base64 of an ASN.1 DER ECDSA P-256 "
        "signature over SHA-256 of the artifact's bytes",
    )
    digest = StrictCharField(
        validators=[RegexValidator(DIGEST_PATTERN, message="sha256: and 64 lower-case hex digits are required.")],
        help_text="`sha256:` and the lower-case hex SHA-256 of the artifact's bytes",
    )
    size = StrictIntegerField(min_value=0, max_value=MAX_ARTIFACT_BYTES, help_text="The artifact's length in bytes")


class RoutePlanSerializer(serializers.Serializer[RoutePlan]):
    """A verified route plan (the fields read from its signed bytes, and how it verified)."""

    mission_id = serializers.IntegerField()
    version = serializers.IntegerField()
    digest = serializers.SerializerMethodField(help_text="`sha256:` and the hex digest of the signed bytes")
    size = serializers.IntegerField(source="size_bytes")
    key_id = serializers.CharField(
        source="signing_key.key_id", help_text="Hex SHA-256 of the verifying key's DER SubjectPublicKeyInfo"
    )
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    waypoints = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))
    verified_at = serializers.DateTimeField()

    def get_digest(self, plan: RoutePlan) -> str:
        return f"sha256:{plan.sha256}"


REFUSALS = ", ".join(f"`{code}` ({status_code})" for code, status_code in Reason.STATUS.items())
EXAMPLE_REFUSAL = problem_body(
    status=422,
    code=Reason.SIGNATURE_INVALID,
    title=Reason.TITLES[Reason.SIGNATURE_INVALID],
    detail="The signature does not verify over the artifact's bytes with any of your registered keys.",
    instance="/api/v1/missions/42/route-plans",
)


def _own_mission(view: PartnerView, pk: int) -> Mission:
    return get_object_or_404(Mission, pk=pk, carrier=view.carrier)


class RoutePlanView(PartnerView):
    """Submit a signed route plan for one of the carrier's missions; list its verified plans."""

    required_scopes = {"GET": "missions:read", "POST": "missions:write"}

    @extend_schema(
        operation_id="mission_route_plans_list",
        responses={200: RoutePlanSerializer(many=True), **problems(*COMMON_READ)},
    )
    def get(self, request: Request, pk: int) -> Response:
        mission = _own_mission(self, pk)
        plans = list(plans_of_mission(mission_id=mission.pk))
        return Response(RoutePlanSerializer(plans, many=True).data)  # type: ignore[arg-type]

    @extend_schema(
        operation_id="mission_route_plans_submit",
        request=RoutePlanSubmissionSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: RoutePlanSerializer,
            (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description="The version is not newer than the mission's verified plan (`route-plan-rollback`), "
                "the mission is closed (`route-plan-mission-closed`), or the Idempotency-Key is in flight.",
            ),
            (422, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description="Refused; the `type` names the reason. Checked in this order: length and digest of "
                "the artifact, its signature with the carrier's active keys, then (only for verified bytes) "
                f"strict JSON and the plan's schema, the mission, version and validity window. All: {REFUSALS}.",
                examples=[OpenApiExample("A signature over other bytes", value=EXAMPLE_REFUSAL)],
            ),
            **problems(400, 401, 403, 404, 413, 415, 429),
        },
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        mission = _own_mission(self, pk)
        serializer = RoutePlanSubmissionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            artifact = base64.b64decode(data["artifact"], validate=True)
        except (binascii.Error, ValueError):  # the pattern admits only what decodes; kept for safety
            artifact = b""
        submission = Submission.of(
            artifact=artifact,
            signature_text=data["signature"],
            declared_sha256=data["digest"].removeprefix("sha256:"),
            declared_size=data["size"],
        )
        outcome = route_plan_submit(
            mission_id=mission.pk, carrier=self.carrier, submission=submission, actor=self.actor
        )
        if outcome.refusal is not None:
            # Answered, not raised: the refusal's event commits with the request (and its idempotency record).
            refusal = outcome.refusal
            body = problem_body(
                status=refusal.status,
                code=refusal.reason,
                title=refusal.title,
                detail=refusal.detail,
                instance=request.path,
                **({"errors": refusal.errors} if refusal.errors else {}),
            )
            return Response(body, status=refusal.status, content_type=PROBLEM_CONTENT_TYPE)
        assert outcome.plan is not None
        return Response(RoutePlanSerializer(outcome.plan).data, status=status.HTTP_201_CREATED)
