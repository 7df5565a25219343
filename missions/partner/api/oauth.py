"""The OAuth2 validator behind /oauth2/token: client credentials only, per-client scopes, certificates.

Client authentication (RFC 6749 §2.3, RFC 8705 §2): a client secret in the
Basic header (``client_secret_basic``) or in the body (``client_secret_post``),
or, for a client that registered its certificate, that certificate alone
(``tls_client_auth``: ``client_id`` in the body, no secret). Whichever was
used, a client that registered a certificate is authenticated only over a
certificate that matches the registration, so a certificate another
carrier's CA bundle entry vouches for is not this client's.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from oauth2_provider.oauth2_validators import OAuth2Validator

from missions.models.partner import PartnerClient, TokenCertificateBinding
from missions.partner.api.mtls import presented_certificate
from missions.partner.certificates import certificate_matches, certificate_thumbprint
from tms_console.unstorable import has_unstorable


def _partner(application: Any) -> PartnerClient | None:
    if application is None:
        return None
    try:
        return PartnerClient.objects.select_related("carrier").get(application=application)
    except PartnerClient.DoesNotExist:
        return None


def certificate_admits(partner: PartnerClient, certificate: x509.Certificate | None) -> bool:
    """Whether ``partner`` may authenticate over ``certificate`` (None: no verified certificate presented)."""
    if partner.has_certificate:
        # RFC 8705 §2.1: the certificate must carry the value this client registered.
        return certificate is not None and certificate_matches(
            certificate, kind=partner.certificate_kind, value=partner.certificate_value
        )
    # A carrier that requires mTLS has its clients register their certificate; one that did not
    # gets no token at all, since any certificate from the CA bundle would otherwise pass.
    return not partner.carrier.require_mtls


class PartnerOAuth2Validator(OAuth2Validator):
    """Issues tokens only to applications bound to a carrier (``PartnerClient``).

    Scopes are limited to the client's allowed set; a client with a registered
    certificate gets tokens only over that certificate, and every token issued
    over a certificate is bound to it (RFC 8705 §3).
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
        by_secret = bool(super().authenticate_client(request, *args, **kwargs))
        if not by_secret and not self._tls_client_auth(request):
            return False
        partner = _partner(request.client)
        if partner is None:
            return False
        certificate = presented_certificate(request.headers)
        if not certificate_admits(partner, certificate):
            return False
        request.partner_x5t_s256 = None if certificate is None else certificate_thumbprint(certificate)
        return True

    def _tls_client_auth(self, request: Any) -> bool:
        """RFC 8705 §2.1: ``client_id`` without any secret, from a client that registered its certificate.

        Only selects the client; ``authenticate_client`` then requires the matching certificate.
        """
        if request.headers.get("HTTP_AUTHORIZATION") or getattr(request, "client_secret", None):
            return False  # secret-based credentials that failed stay failed
        client_id = getattr(request, "client_id", None)
        if not client_id or self._load_application(client_id, request) is None:
            return False
        partner = _partner(request.client)
        return partner is not None and partner.has_certificate

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
