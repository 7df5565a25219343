"""OAuth 2.0 routes (mounted at the site root): token, revocation, and the server's RFC 8414 metadata."""

from django.urls import URLPattern, path

from missions.partner.api import oauth_views
from missions.partner.api.token import GuardedTokenView

# The token endpoint behind the guard on failed client secrets (tms_console.auth_guard).
token = GuardedTokenView.as_view()
revoke = oauth_views.PartnerRevokeTokenView.as_view()

urlpatterns: list[URLPattern] = [
    path("oauth2/token", token, name="oauth2-token"),
    path("oauth2/token/", token),  # as many clients write it
    path("oauth2/revoke", revoke, name="oauth2-revoke"),
    path("oauth2/revoke/", revoke),
    path(
        ".well-known/oauth-authorization-server",
        oauth_views.AuthorizationServerMetadataView.as_view(),
        name="oauth2-metadata",
    ),
]
