"""drf-spectacular hooks: the published schema covers the partner API only."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from missions.models.partner import PARTNER_SCOPES


def only_partner_api(endpoints: list[tuple[str, str, str, Any]], **_: Any) -> list[tuple[str, str, str, Any]]:
    """Drop everything outside /api/v1/ and the schema/docs endpoints themselves."""
    return [
        endpoint
        for endpoint in endpoints
        if endpoint[0].startswith("/api/v1/") and not endpoint[0].startswith(("/api/v1/schema", "/api/v1/docs"))
    ]


class PartnerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describe bearer tokens from /oauth2/token, with the scope each operation needs."""

    target_class = "missions.partner.api.authentication.PartnerTokenAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "oauth2",
            "flows": {"clientCredentials": {"tokenUrl": "/oauth2/token", "scopes": dict(PARTNER_SCOPES)}},
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        scopes: dict[str, str] = getattr(auto_schema.view, "required_scopes", {}) or {}
        needed = scopes.get(auto_schema.method)
        return {self.name: [needed] if needed else []}
