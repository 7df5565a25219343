"""The partner API's rate limits in DRF (the policies are ``missions.partner.api.limits``'s).

The counting is ``tms_console.ratelimit``'s (atomic in the shared store);
the address is ``tms_console.client_address``'s (``X-Forwarded-For`` only from
a trusted proxy). Every ``/api/`` answer carries the ``RateLimit-Policy`` and
``RateLimit`` fields of the decisions it met (``RateLimitHeadersMiddleware``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase
from rest_framework.exceptions import ErrorDetail, Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from missions.partner.api.authentication import PartnerPrincipal
from missions.partner.api.limits import address_policy, client_policy
from tms_console.client_address import address_partition, client_address
from tms_console.dual_middleware import DualModeMiddleware
from tms_console.ratelimit import Decision, decision_attach, decisions_of, limiter, ratelimit_headers

# tms_console.problem.API_PREFIXES; not imported from there: that module imports DRF's views,
# which import this module (DEFAULT_THROTTLE_CLASSES) while it loads.
API_PREFIXES = ("/api/",)


class RateLimited(Throttled):
    """429 ``rate-limited`` with ``Retry-After`` and the violated policy (draft section 5.1)."""

    def __init__(self, decision: Decision) -> None:
        policy = decision.policy
        super().__init__(wait=decision.retry_after)
        # Our own wording (DRF's would add "Expected available in N seconds.").
        self.detail = ErrorDetail(
            f"More than {policy.rate.limit} requests in {policy.rate.window_seconds} s "
            f"({policy.name} limit); retry after {decision.retry_after} s.",
            code="throttled",
        )
        self.problem_extra = {"violated-policies": [policy.name]}


class PartnerClientRateThrottle(BaseThrottle):
    """Per OAuth client once authenticated, per client address before (webhooks); atomic across processes."""

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.user
        if isinstance(principal, PartnerPrincipal):
            policy, partition = client_policy(), f"client:{principal.client.pk}"
        else:
            policy, partition = address_policy(), address_partition(self.get_ident(request))
        if policy is None:
            return True
        decision = limiter().hit(policy, partition)
        decision_attach(request._request, decision)
        if not decision.allowed:
            raise RateLimited(decision)
        return True

    def get_ident(self, request: Request) -> str:
        # Never DRF's own: it believes X-Forwarded-For from anyone (NUM_PROXIES unset).
        return client_address(request.META)


def default_decision(request: HttpRequest) -> Decision | None:
    """For an answer that met no limit: the client address's standing under the ``address`` policy."""
    policy = address_policy()
    if policy is None:
        return None
    return limiter().peek(policy, address_partition(client_address(request.META)))


class RateLimitHeadersMiddleware(DualModeMiddleware):
    """Puts ``RateLimit-Policy`` and ``RateLimit`` on every ``/api/`` answer.

    They describe the decisions the request met (its client's limit, the
    guard on failed tokens); an answer that met none (an unknown URL, a 401
    before any limit, a body refused for its size) describes its address's
    standing, read without spending anything.
    """

    def call(self, request: HttpRequest) -> HttpResponseBase:
        response = self.respond(request)
        if not request.path.startswith(API_PREFIXES):
            return response
        decisions = decisions_of(request)
        if not decisions:
            default = default_decision(request)
            decisions = [default] if default is not None else []
        return _with_headers(response, decisions)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.arespond(request)
        if not request.path.startswith(API_PREFIXES):
            return response
        decisions = decisions_of(request)
        if not decisions:
            # A read of the shared store (Redis or the database): in a thread.
            default = await sync_to_async(default_decision)(request)
            decisions = [default] if default is not None else []
        return _with_headers(response, decisions)


def _with_headers(response: HttpResponseBase, decisions: list[Decision]) -> HttpResponseBase:
    for name, value in ratelimit_headers(decisions).items():
        response[name] = value
    return response
