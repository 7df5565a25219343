"""Scope checks: a view names the scope it needs per method; a missing one is 403 ``insufficient_scope``."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from missions.partner.api.authentication import REALM, PartnerPrincipal


class InsufficientScope(PermissionDenied):
    """403 with ``WWW-Authenticate: Bearer error="insufficient_scope"`` (RFC 6750 §3.1)."""

    problem_code = "insufficient-scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This call needs the '{scope}' scope.")
        self.extra_headers = {
            "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        }
        self.problem_extra = {"required_scope": scope}


class HasPartnerScope(BasePermission):
    """Allow a partner principal holding the view's ``required_scopes[method]`` (or ``required_scope``)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, PartnerPrincipal):
            raise NotAuthenticated()
        scopes: dict[str, str] = getattr(view, "required_scopes", {}) or {}
        needed = scopes.get(request.method or "GET") or getattr(view, "required_scope", None)
        if needed and needed not in principal.scopes:
            raise InsufficientScope(needed)
        return True
