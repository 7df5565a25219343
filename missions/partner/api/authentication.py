"""Bearer-token authentication for the partner API (RFC 6750), resolving the token to its carrier."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import NoReturn

from oauth2_provider.models import AccessToken
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, ErrorDetail, Throttled
from rest_framework.request import Request

from missions.models import Carrier
from missions.models.partner import PartnerClient
from missions.partner.api.mtls import presented_thumbprint
from missions.partner.api.token_lookup import token_with_client
from tms_console.auth_guard import bearer_failure_record
from tms_console.client_address import client_address
from tms_console.ratelimit import Decision, decision_attach

REALM = "tms-partner-api"


@dataclass(frozen=True)
class PartnerPrincipal:
    """The caller of an API request: an OAuth client acting for one carrier with a set of scopes."""

    client: PartnerClient
    carrier: Carrier
    scopes: frozenset[str] = field(default_factory=frozenset)
    is_authenticated: bool = True
    is_anonymous: bool = False
    pk: int | None = None

    def __str__(self) -> str:
        return f"client:{self.client.application.client_id}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class InvalidToken(AuthenticationFailed):
    """401 with ``error="invalid_token"`` (RFC 6750 §3.1)."""

    problem_code = "invalid-token"


class TooManyFailures(Throttled):
    """429 ``too-many-failures``: this address spent its budget of failed tokens (README "Security")."""

    problem_code = "too-many-failures"

    def __init__(self, decision: Decision) -> None:
        super().__init__(wait=decision.retry_after)
        self.detail = ErrorDetail(
            f"Too many failed access tokens from this address; retry after {decision.retry_after} s.",
            code="throttled",
        )
        self.problem_extra = {"violated-policies": [decision.policy.name]}


class PartnerTokenAuthentication(BaseAuthentication):
    """Authenticate ``Authorization: Bearer`` tokens issued by /oauth2/token to a partner client."""

    def authenticate(self, request: Request) -> tuple[PartnerPrincipal, AccessToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return self._fail(request, "The Authorization header must be 'Bearer <token>'.")
        raw = value.strip()
        checksum = hashlib.sha256(raw.encode("utf-8")).hexdigest()
        # One statement: the token, its application, partner client, carrier and certificate binding.
        token = token_with_client(checksum)
        if token is None or token.application is None:
            return self._fail(request, "The access token is unknown or revoked.")
        try:
            partner: PartnerClient | None = token.application.partner_client  # fetched with the token
        except PartnerClient.DoesNotExist:
            partner = None
        if token.is_expired():
            return self._fail(request, "The access token expired.", partner)
        if partner is None:
            return self._fail(request, "The access token was not issued to a partner client.")
        self._check_certificate(request, token, partner)
        principal = PartnerPrincipal(
            client=partner, carrier=partner.carrier, scopes=frozenset(token.scope.split()), pk=partner.pk
        )
        return principal, token

    def _check_certificate(self, request: Request, token: AccessToken, partner: PartnerClient) -> None:
        binding = getattr(token, "certificate_binding", None)  # fetched with the token
        if binding is None:
            if partner.carrier.require_mtls:
                self._fail(request, "This carrier requires certificate-bound tokens.", partner)
            return
        presented = presented_thumbprint(request.META)
        # RFC 8705 §3: the certificate of this connection must be the one the token was issued over.
        if presented is None or not hmac.compare_digest(presented, binding.x5t_s256):
            self._fail(request, "The access token is bound to another client certificate.", partner)

    def _fail(self, request: Request, description: str, partner: PartnerClient | None = None) -> NoReturn:
        # The guard on guessing: each failure counts against the client's address; past the budget, 429.
        decision = bearer_failure_record(
            address=client_address(request.META),
            reason=description,
            subject_type="partner_client" if partner is not None else None,
            subject_id=partner.pk if partner is not None else None,
            carrier_id=partner.carrier_id if partner is not None else None,
        )
        if decision is not None:
            decision_attach(request._request, decision)
            if not decision.allowed:
                raise TooManyFailures(decision)
        request._partner_auth_error = description  # type: ignore[attr-defined]
        raise InvalidToken(description)

    def authenticate_header(self, request: Request) -> str:
        error = getattr(request, "_partner_auth_error", None)
        if error is None:
            # RFC 6750 §3.1: no error code when the request carried no credentials.
            return f'Bearer realm="{REALM}"'
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{_quote(error)}"'
