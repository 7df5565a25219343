"""The OAuth2 validator behind /oauth2/token: client credentials only, per-client scopes, cert binding."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

from missions.models.partner import PartnerClient, TokenCertificateBinding
from missions.partner.api.mtls import presented_thumbprint
from tms_console.unstorable import has_unstorable


def _partner(application: Any) -> PartnerClient | None:
    if application is None:
        return None
    try:
        return PartnerClient.objects.select_related("carrier").get(application=application)
    except PartnerClient.DoesNotExist:
        return None


class PartnerOAuth2Validator(OAuth2Validator):
    """Issues tokens only to applications bound to a carrier (``PartnerClient``).

    Scopes are limited to the client's allowed set; a carrier that requires
    mTLS gets tokens only over a verified client certificate, and each such
    token is bound to that certificate (RFC 8705 §3).
    """

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if grant_type != "client_credentials" or _partner(client) is None:
            return False
        return bool(super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs))

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        partner = _partner(client)
        return partner is not None and set(scopes).issubset(partner.scopes)

    def get_default_scopes(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> list[str]:
        partner = _partner(request.client)
        return sorted(partner.scopes) if partner else []

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        if not super().authenticate_client(request, *args, **kwargs):
            return False
        partner = _partner(request.client)
        if partner is None:
            return False
        thumbprint = presented_thumbprint(request.headers)
        if partner.carrier.require_mtls and thumbprint is None:
            # RFC 8705 §2: this client authenticates only over mutual TLS.
            return False
        request.partner_x5t_s256 = thumbprint
        return True

    def _load_application(self, client_id: Any, request: Any) -> Any:
        # Every way a client id arrives (Basic credentials, the form) is looked up here; one holding
        # a string PostgreSQL cannot even compare (U+0000) names no client, rather than a 500.
        if isinstance(client_id, str) and has_unstorable(client_id):
            request.client = None
            return None
        return super()._load_application(client_id, request)

    def _create_access_token(self, expires: Any, request: Any, token: Any, source_refresh_token: Any = None) -> Any:
        access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        thumbprint = getattr(request, "partner_x5t_s256", None)
        if thumbprint:
            TokenCertificateBinding.objects.create(access_token=access_token, x5t_s256=thumbprint)
            # RFC 8705 §3.1: tell the client its token is certificate-bound.
            token["cnf"] = {"x5t#S256": thumbprint}
        return access_token
