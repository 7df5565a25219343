"""Small helpers shared by the tendering tests."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from missions import services
from missions.events import Actor
from missions.models import AuditEvent, Carrier, Shipment, Tender
from missions.tendering import dispatch

DISPATCHER = Actor.system("test-dispatcher")


def tender_to(shipment: Shipment, carrier: Carrier, *, price: Decimal = Decimal("1400.00")) -> Tender:
    """Tender like the console does: create, publish, commit (the send task runs eagerly after commit)."""
    with transaction.atomic():
        tender = services.tender_create(
            actor=DISPATCHER, shipment_id=shipment.pk, carrier_id=carrier.pk, offered_price_usd=price
        )
        dispatch.tender_publish(tender_id=tender.pk)
    tender.refresh_from_db()
    return tender


def actions(**filters: object) -> list[str]:
    return list(AuditEvent.objects.filter(**filters).order_by("id").values_list("action", flat=True))
