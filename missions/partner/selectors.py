"""Reads for partner credentials."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Max, Q

from missions.models import Carrier


def webhook_secrets_due(*, issued_before: datetime, now: datetime, slugs: list[str] | None = None) -> list[Carrier]:
    """Carriers whose newest webhook secret valid now was issued before ``issued_before``.

    A carrier that never had a secret is not due: it does not sign webhooks yet, and a secret
    nobody asked for would only widen what can be leaked.
    """
    valid_now = Q(webhook_secrets__valid_from__lte=now) & (
        Q(webhook_secrets__valid_until__isnull=True) | Q(webhook_secrets__valid_until__gt=now)
    )
    carriers = Carrier.objects.annotate(newest=Max("webhook_secrets__valid_from", filter=valid_now)).filter(
        newest__lt=issued_before
    )
    if slugs:
        carriers = carriers.filter(slug__in=slugs)
    return list(carriers.order_by("slug"))
