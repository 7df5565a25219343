"""``/oauth2/token`` behind the guard on guessing (``PartnerTokenView`` inside).

Every request reserves a guess in the budget of its client id at its address
and in the address's own budget (``tms_console.auth_guard``) before the
secret is checked; an ``invalid_client`` answer keeps the guess spent and is
recorded as a security event (an audit event when the client id is one of
ours), any other answer gives it back. A spent budget answers 429
(problem+json, ``Retry-After``) without checking the secret, so a right
secret found after the budget does not work from there either; the client's
own requests from another address are not affected.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import unquote_plus

from django.http import HttpRequest, HttpResponse

from missions.models.partner import PartnerClient
from missions.partner.api.oauth_views import PartnerTokenView
from tms_console.auth_guard import GuardKind, GuessRefused, attempt_begin
from tms_console.client_address import client_address
from tms_console.problem import problem_response
from tms_console.ratelimit import ratelimit_headers
from tms_console.unstorable import has_unstorable


def client_id_of(request: HttpRequest) -> str:
    """The client id a token request names: HTTP Basic (RFC 6749 §2.3.1, form-encoded) or the body."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return unquote_plus(decoded.partition(":")[0])[:200]
    return str(request.POST.get("client_id", ""))[:200]


def _violated(policy: str) -> dict[str, Any]:
    # The draft's problem member (section 5.1), whose name is no Python keyword.
    return {"violated-policies": [policy]}


def _is_invalid_client(response: HttpResponse) -> bool:
    if response.status_code not in (400, 401):
        return False
    try:
        return bool(json.loads(response.content).get("error") == "invalid_client")
    except (ValueError, AttributeError):
        return False


class GuardedTokenView(PartnerTokenView):
    """The client-credentials token endpoint, with a budget of failed client secrets."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client_id = client_id_of(request)
        # A client id no column can hold (U+0000, a lone surrogate) names no client; it is still
        # counted, under a form the stores can keep.
        storable = not has_unstorable(client_id)
        if not storable:
            client_id = client_id.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            client_id = client_id.replace("\x00", "\\x00")
        address = client_address(request.META)
        try:
            attempt = attempt_begin(kind=GuardKind.CLIENT_SECRET, identity=client_id, address=address)
        except GuessRefused as refused:
            return problem_response(
                request,
                status=429,
                code="too-many-failures",
                detail=f"Too many failed client authentications from this address; "
                f"retry after {refused.retry_after} s.",
                headers={
                    "Retry-After": str(refused.retry_after),
                    "Cache-Control": "no-store",
                    **ratelimit_headers([refused.decision]),
                },
                **_violated(refused.decision.policy.name),
            )
        response: HttpResponse = super().post(request, *args, **kwargs)
        if not _is_invalid_client(response):
            attempt.succeeded()
            return response
        partner = (
            PartnerClient.objects.filter(application__client_id=client_id).only("pk", "carrier_id").first()
            if storable
            else None
        )
        attempt.failed(
            reason="client authentication failed" if partner is not None else "unknown client id",
            subject_type="partner_client" if partner is not None else None,
            subject_id=partner.pk if partner is not None else None,
            carrier_id=partner.carrier_id if partner is not None else None,
        )
        return response
