"""The EDI inbound endpoint: a carrier POSTs an X12 interchange (990, 214, 997) and gets its 997 back.

The interchange's ISA13 is its idempotency key (per sender): a resend is answered with the
first 997 and changes nothing, so no Idempotency-Key header is needed here.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.request import Request

from missions.edi.services import interchange_receive
from missions.edi.transports import MEDIA_TYPE
from missions.models.edi import EdiStatus
from missions.partner.api.serializers import ProblemSerializer
from missions.partner.api.views import PartnerView, problems
from tms_console.problem import PROBLEM_CONTENT_TYPE, ProblemError
from tms_console.unstorable import has_unstorable

EXAMPLE_990 = (
    "ISA*00*          *00*          *ZZ*RRFL           *ZZ*TMSCONSOLE     *250102*0915*U*00401*000000042*0*P*>~\n"
    "GS*GF*RRFL*TMSCONSOLE*20250102*0915*42*X*004010~\nST*990*0001~\nB1*RRFL*TND-17*20250102*A~\n"
    "N9*CN*RR-88120~\nSE*4*0001~\nGE*1*42~\nIEA*1*000000042~\n"
)


class EdiInterchangeView(PartnerView):
    """Receive one X12 interchange from the calling carrier; answer with its 997."""

    required_scopes = {"POST": "edi:write"}

    @extend_schema(
        operation_id="edi_interchange_receive",
        request={
            MEDIA_TYPE: {
                "type": "string",
                "description": "One X12 interchange (ISA ... IEA), version 00401 or 00501, from the calling "
                "carrier's EDI identity: 990 responses, 214 status messages, 997 acknowledgements. See docs/edi.md.",
                "example": EXAMPLE_990,
            }
        },
        responses={
            (200, MEDIA_TYPE): OpenApiResponse(
                {"type": "string"},
                description="The 997 acknowledging every functional group (AK9 A or P): what was applied. A "
                "resent interchange (same ISA13) is answered with the first 997 and applied nothing again. "
                "A 997 from the carrier is acknowledged by nothing: the body is then empty.",
                examples=[OpenApiExample("997", value="ISA*...~GS*FA*...~ST*997*0001~AK1*GF*42~...~IEA*1*000000007~")],
            ),
            (415, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer, description=f"The body is not `{MEDIA_TYPE}` (or `text/plain`) in UTF-8."
            ),
            (422, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description="The body is not an X12 interchange (`edi-unreadable`), or the interchange was "
                "refused (`edi-rejected`): `errors` locates each problem "
                "(segment, position, element) and `acknowledgement` holds the rejecting 997 when one could be "
                "written. Nothing of a rejected set was applied.",
            ),
            **problems(400, 401, 403, 413, 429),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        django_request = request._request
        media_type = (django_request.content_type or "").strip().lower()
        if media_type not in (MEDIA_TYPE, "text/plain"):
            raise UnsupportedMediaType(
                django_request.META.get("CONTENT_TYPE", ""), detail=f"Send the interchange as {MEDIA_TYPE}."
            )
        try:
            text = django_request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedMediaType(
                media_type, detail="The interchange must be UTF-8 (X12 character set)."
            ) from None
        if not text.strip() or has_unstorable(text):
            raise ProblemError(422, "edi-unreadable", "The body is empty or holds characters X12 does not allow.")
        receipt = interchange_receive(text=text, source="api", carrier=self.carrier)
        record = receipt.record
        if record.status == EdiStatus.DUPLICATE and record.duplicate_of is not None:
            original = record.duplicate_of.status
        else:
            original = record.status
        if original in (EdiStatus.ACCEPTED, EdiStatus.PARTIAL):
            return HttpResponse(receipt.ack_text, content_type=MEDIA_TYPE, status=200)
        errors = (record.duplicate_of.errors if record.duplicate_of else record.errors) or []
        if not receipt.ack_text and not record.transaction_types:
            raise ProblemError(
                422,
                "edi-unreadable",
                errors[0] if errors else "Not an X12 interchange.",
                errors=[{"pointer": "", "detail": e, "code": "edi"} for e in errors[:20]],
            )
        raise ProblemError(
            422,
            "edi-rejected",
            errors[0] if errors else "The interchange was rejected.",
            errors=[{"pointer": "", "detail": e, "code": "edi"} for e in errors[:20]],
            acknowledgement=receipt.ack_text or None,
            interchange=record.pk,
        )
