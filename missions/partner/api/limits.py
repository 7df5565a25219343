"""The partner API's rate-limit policies.

* ``partner``: every authenticated request, per OAuth client (``API_RATE_LIMIT``);
* ``address``: unauthenticated requests (webhook deliveries before their
  signature is checked), per client address (``API_RATE_LIMIT``);
* ``webhook``: verified telemetry deliveries on the WSGI fast path, per
  carrier (``WEBHOOK_RATE_LIMIT`` per minute).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from tms_console.auth_guard import GuardKind, guard_budgets
from tms_console.ratelimit import Policy, Rate

RATELIMIT_DRAFT = "draft-ietf-httpapi-ratelimit-headers-11"


def client_policy() -> Policy | None:
    rate = Rate.parse(str(settings.API_RATE_LIMIT))
    return Policy("partner", rate, leased=True) if rate else None


def address_policy() -> Policy | None:
    rate = Rate.parse(str(settings.API_RATE_LIMIT))
    return Policy("address", rate, leased=True) if rate else None


def webhook_policy() -> Policy | None:
    limit = int(settings.WEBHOOK_RATE_LIMIT)
    return Policy("webhook", Rate(limit=limit, window_seconds=60), leased=True) if limit > 0 else None


def published_policies() -> list[dict[str, Any]]:
    """The policies as ``/api/v1/capabilities`` states them."""
    described = [
        (client_policy(), "client", "every authenticated request"),
        (address_policy(), "address", "unauthenticated requests (webhook deliveries)"),
        (webhook_policy(), "carrier", "verified telemetry webhook deliveries on the WSGI ingest path"),
    ]
    return [
        {
            "name": policy.name,
            "quota": policy.rate.limit,
            "window_seconds": policy.rate.window_seconds,
            "partition": partition,
            "applies_to": applies_to,
            "field": policy.field(),
        }
        for policy, partition, applies_to in described
        if policy is not None
    ]


def published_budgets() -> list[dict[str, Any]]:
    """The guard's budgets of failed credentials a partner can meet (README "Security")."""
    entries: list[dict[str, Any]] = []
    for kind in (GuardKind.BEARER_TOKEN, GuardKind.CLIENT_SECRET):
        per_identity, per_address = guard_budgets(kind)
        for policy, per in ((per_identity, "client id and address"), (per_address, "address")):
            if policy is not None:
                entries.append(
                    {
                        "credential": kind.value,
                        "per": per,
                        "failures": policy.rate.limit,
                        "window_seconds": policy.rate.window_seconds,
                    }
                )
    return entries
