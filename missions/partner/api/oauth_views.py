"""The OAuth 2.0 endpoints carriers call: token (RFC 6749 §4.4), revocation (RFC 7009), metadata (RFC 8414).

The token and revocation views are django-oauth-toolkit's, with the one
answer it gets wrong for us: a failed client authentication is challenged
with ``Basic``, the scheme clients authenticate with at these endpoints
(RFC 6749 §5.2), where oauthlib writes a ``Bearer`` challenge.

``AuthorizationServerMetadataView`` publishes what the server really
supports, for clients that configure themselves from
``/.well-known/oauth-authorization-server``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views import View
from oauth2_provider.views import RevokeTokenView, TokenView

from missions.models.partner import PARTNER_SCOPES
from missions.partner.api.authentication import REALM

# RFC 6749 §2.3.1 (secret in the Basic header or in the body) and RFC 8705 §2.1 (the registered certificate).
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "tls_client_auth"]
CLIENT_CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


class _BasicChallenge:
    """A 401 from this endpoint challenges for client credentials, never for a bearer token."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().post(request, *args, **kwargs)  # type: ignore[misc]
        if response.status_code == 401:
            # RFC 6749 §5.2: invalid_client answers 401 with a challenge of the client's
            # authentication scheme (a client that sent no Authorization header learns the one we take).
            response["WWW-Authenticate"] = CLIENT_CHALLENGE
        return response


class PartnerTokenView(_BasicChallenge, TokenView):  # type: ignore[misc]
    """``POST /oauth2/token`` (also with a trailing slash): client-credentials tokens for partner clients."""


class PartnerRevokeTokenView(_BasicChallenge, RevokeTokenView):  # type: ignore[misc]
    """``POST /oauth2/revoke`` (also with a trailing slash): RFC 7009 token revocation."""


def issuer() -> str:
    """The authorization server's issuer identifier: the partner-facing origin, no trailing slash."""
    return str(settings.OAUTH2_ISSUER).rstrip("/")


class AuthorizationServerMetadataView(View):
    """RFC 8414 metadata, public JSON: endpoints, grant types, client authentication methods, scopes."""

    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest) -> JsonResponse:
        base = issuer()
        client_auth = list(CLIENT_AUTH_METHODS)
        return JsonResponse(
            {
                "issuer": base,
                "token_endpoint": base + reverse("oauth2-token"),
                "token_endpoint_auth_methods_supported": client_auth,
                "grant_types_supported": ["client_credentials"],
                # REQUIRED by RFC 8414 §2; there is no authorization endpoint, so no response type.
                "response_types_supported": [],
                "scopes_supported": sorted(PARTNER_SCOPES),
                "revocation_endpoint": base + reverse("oauth2-revoke"),
                "revocation_endpoint_auth_methods_supported": client_auth,
                # RFC 8705 §3.3: tokens issued over a client certificate are bound to it.
                "tls_client_certificate_bound_access_tokens": True,
                "service_documentation": base + reverse("api-docs"),
            }
        )
