"""Per-client rate limit (429 with Retry-After); the rate is read from settings at each call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from missions.partner.api.authentication import PartnerPrincipal


class PartnerClientRateThrottle(SimpleRateThrottle):
    """A sliding-window limit per OAuth client, shared by all processes through the cache."""

    scope = "partner"

    def get_rate(self) -> str | None:
        return str(settings.API_RATE_LIMIT)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        principal = request.user
        if isinstance(principal, PartnerPrincipal):
            return f"throttle:partner:{principal.client.pk}"
        # Unauthenticated calls (webhooks, failed auth) are limited per address.
        return f"throttle:anon:{self.get_ident(request)}"
