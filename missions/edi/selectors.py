"""Read queries for the EDI console pages."""

from __future__ import annotations

from django.db.models import QuerySet

from missions.models.edi import EdiInterchange


def interchanges(*, direction: str = "", carrier_id: int | None = None) -> QuerySet[EdiInterchange]:
    qs = EdiInterchange.objects.select_related("carrier", "ack", "tender", "mission").order_by("-created_at", "-id")
    if direction:
        qs = qs.filter(direction=direction)
    if carrier_id is not None:
        qs = qs.filter(carrier_id=carrier_id)
    return qs
