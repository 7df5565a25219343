"""Evidence API under /api/v1/evidence/: the latest checkpoint, log proofs and mission bundles.

Callers: partner clients with an OAuth token (a bundle needs ``missions:read`` and only covers
the client's own missions), and console users with VIEW_CONSOLE in a session verified with a
one-time code. Errors are problem+json through the project's exception handler.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from missions.evidence import selectors, services
from missions.evidence.verify_core import checkpoint_parse
from missions.models import Mission
from missions.partner.api.authentication import PartnerPrincipal, PartnerTokenAuthentication
from missions.partner.api.permissions import HasPartnerScope
from missions.partner.api.query import IntegerQuery
from missions.partner.api.views import problems
from tms_console.permissions import is_verified
from tms_console.problem import ProblemError
from tms_console.roles import VIEW_CONSOLE, perm


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


class PartnerOrConsoleViewer(BasePermission):
    """A partner token (with the view's scope, if any) or a verified console user who may view the console."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, PartnerPrincipal):
            return HasPartnerScope().has_permission(request, view)
        if user is None or not getattr(user, "is_authenticated", False):
            raise NotAuthenticated()
        if not is_verified(user):
            raise NotAuthenticated("A console session needs a verified one-time code.")
        if not user.has_perm(perm(VIEW_CONSOLE)):
            raise PermissionDenied()
        return True


class PlainTextRenderer(BaseRenderer):
    """``text/plain``: the signed note as is; anything else (an error document) as JSON."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if isinstance(data, str):
            return data.encode("utf-8")
        return json.dumps(data).encode("utf-8")


class EvidenceView(APIView):
    authentication_classes = [PartnerTokenAuthentication, SessionAuthentication]
    permission_classes = [PartnerOrConsoleViewer]
    required_scopes: dict[str, str] = {}


class CheckpointSerializer(serializers.Serializer[Any]):
    origin = serializers.CharField()
    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField(help_text="base64 RFC 6962 root hash")
    key_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    note = serializers.CharField(help_text="C2SP signed note (tlog-checkpoint)")


class InclusionProofSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    leaf_hash = serializers.CharField(help_text="base64 RFC 6962 leaf hash")
    inclusion_proof = serializers.ListField(child=serializers.CharField())


class ConsistencyProofSerializer(serializers.Serializer[Any]):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    consistency_proof = serializers.ListField(child=serializers.CharField())


# RFC 9162 sizes and indexes; the log's current size bounds them further (422 beyond it).
LOG_BOUND = 2**62
INCLUSION_INDEX = IntegerQuery("index", 0, LOG_BOUND, "0-based index of the leaf", required=True)
INCLUSION_TREE_SIZE = IntegerQuery(
    "tree_size", 1, LOG_BOUND, "Size of the tree the proof is for (at most the log size)", required=True
)
CONSISTENCY_FIRST = IntegerQuery("first", 1, LOG_BOUND, "The older tree size (at most `second`)", required=True)
CONSISTENCY_SECOND = IntegerQuery("second", 1, LOG_BOUND, "The newer tree size (at most the log size)", required=True)


def _proof_unavailable(exc: selectors.ProofRequestError) -> ProblemError:
    # Well-formed sizes and indexes that this log cannot answer for (beyond its size, index past
    # the tree, first after second): the schema cannot state them, so they are not a 400.
    errors = [{"pointer": "", "detail": str(exc), "code": "out_of_range"}]
    return ProblemError(422, "proof-unavailable", str(exc), errors=errors)


class CheckpointView(EvidenceView):
    """The latest signed checkpoint of the evidence log (JSON, or the bare note for ``Accept: text/plain``)."""

    renderer_classes = [JSONRenderer, PlainTextRenderer]

    @extend_schema(
        operation_id="evidence_checkpoint",
        responses={
            (200, "application/json"): CheckpointSerializer,
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="the signed note"),
            **problems(401, 403, 404, 406, 429),
        },
    )
    def get(self, request: Request) -> Response:
        checkpoint = selectors.checkpoint_latest()
        if checkpoint is None:
            raise ProblemError(404, "not-found", "The evidence log has no checkpoint yet.")
        if request.accepted_renderer.format == "txt":
            return Response(checkpoint.note, content_type="text/plain; charset=utf-8")
        body = checkpoint_parse(checkpoint.note.split("\n\n", 1)[0] + "\n")
        return Response(
            CheckpointSerializer(
                {
                    "origin": body.origin,
                    "tree_size": checkpoint.tree_size,
                    "root_hash": _b64(bytes(checkpoint.root_hash)),
                    "key_id": checkpoint.key_id,
                    "created_at": checkpoint.created_at,
                    "note": checkpoint.note,
                }
            ).data
        )


class InclusionProofView(EvidenceView):
    """RFC 9162 §2.1.3 inclusion proof of a leaf in the tree of ``tree_size`` leaves."""

    @extend_schema(
        operation_id="evidence_inclusion_proof",
        parameters=[INCLUSION_INDEX.parameter(), INCLUSION_TREE_SIZE.parameter()],
        responses={200: InclusionProofSerializer, **problems(400, 401, 403, 422, 429)},
    )
    def get(self, request: Request) -> Response:
        index = INCLUSION_INDEX.parse(request)
        tree_size = INCLUSION_TREE_SIZE.parse(request)
        try:
            proof = selectors.inclusion_proof(index=index, tree_size=tree_size)
        except selectors.ProofRequestError as exc:
            raise _proof_unavailable(exc) from None
        leaf = selectors.leaf_hashes(index, index + 1)[0]
        return Response(
            InclusionProofSerializer(
                {
                    "index": index,
                    "tree_size": tree_size,
                    "leaf_hash": _b64(leaf),
                    "inclusion_proof": [_b64(h) for h in proof],
                }
            ).data
        )


class ConsistencyProofView(EvidenceView):
    """RFC 9162 §2.1.4 consistency proof between two tree sizes of the evidence log."""

    @extend_schema(
        operation_id="evidence_consistency_proof",
        parameters=[CONSISTENCY_FIRST.parameter(), CONSISTENCY_SECOND.parameter()],
        responses={200: ConsistencyProofSerializer, **problems(400, 401, 403, 422, 429)},
    )
    def get(self, request: Request) -> Response:
        first = CONSISTENCY_FIRST.parse(request)
        second = CONSISTENCY_SECOND.parse(request)
        try:
            proof = selectors.consistency_proof(first=first, second=second)
        except selectors.ProofRequestError as exc:
            raise _proof_unavailable(exc) from None
        return Response(
            ConsistencyProofSerializer(
                {
                    "first": first,
                    "second": second,
                    "consistency_proof": [_b64(h) for h in proof],
                }
            ).data
        )


class MissionBundleView(EvidenceView):
    """The mission's evidence bundle (docs/evidence.md), verifiable offline with tools/verify_evidence.py."""

    required_scopes = {"GET": "missions:read"}

    @extend_schema(
        operation_id="evidence_mission_bundle",
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="evidence bundle v1"),
            **problems(401, 403, 404, 409, 429),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        missions = Mission.objects.all()
        if isinstance(request.user, PartnerPrincipal):
            # Another carrier's mission is "not found", never "forbidden": ids reveal nothing.
            missions = missions.filter(carrier=request.user.carrier)
        if not missions.filter(pk=pk).exists():
            raise ProblemError(404, "not-found", "No such resource for this client.")
        data = services.evidence_bundle_for_mission(pk)
        response = HttpResponse(data, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="evidence-mission-{pk}.json"'
        return response
