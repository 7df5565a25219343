"""Asynchronous answers: the simulator posts to the console's partner API or sends a signed webhook."""

from __future__ import annotations

from typing import Any

import pytest

from missions.choices import OfferKind, TenderStatus
from missions.events import Actor
from missions.models import Mission, Offer, Shipment
from missions.partner.services import partner_client_create, webhook_secret_rotate
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import tender_to

pytestmark = pytest.mark.django_db(transaction=True)


def test_async_accept_arrives_through_the_partner_api(
    make_sim: SimFactory, shipment: Shipment, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = live_server.url
    sim = make_sim(answer="async", delay_ms=3_600_000, policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Auto Async")
    issued = partner_client_create(
        carrier_id=carrier.pk, name="sim", scopes=["tender:write", "tender:read"], actor=Actor.system("test")
    )
    sim.state.config.console_url = live_server.url
    sim.state.config.console_client_id = issued.client_id
    sim.state.config.console_client_secret = issued.client_secret
    tender = tender_to(shipment, carrier)
    assert tender.status == TenderStatus.SENT

    record = sim.answer_now(tender.external_ref)

    assert record is not None and record.get("channel") == "partner-api", record
    assert record["status_code"] == 201, record
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED
    offer = Offer.objects.get(tender=tender)
    assert offer.kind == OfferKind.ACCEPT and offer.source == "api"
    assert Mission.objects.get(tender=tender).vehicle is not None
    # A redelivery (same Idempotency-Key) is answered from the console's replay: no second offer.
    remote = sim.state.tenders[tender.external_ref]
    assert remote.offer is not None
    again = sim._deliver(remote, remote.offer)
    assert again["status_code"] == 201, again
    assert Offer.objects.filter(tender=tender).count() == 1


def test_async_reject_arrives_as_a_signed_webhook(
    make_sim: SimFactory, shipment: Shipment, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = live_server.url
    sim = make_sim(answer="async", delay_ms=3_600_000, policy={"reject": 1.0})
    carrier = push_carrier(sim, name="Auto Hook")
    secret = webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("test"))
    sim.state.config.webhook_secret = secret.secret
    tender = tender_to(shipment, carrier)

    record = sim.answer_now(tender.external_ref)

    assert record is not None and record.get("channel") == "webhook", record
    assert 200 <= record["status_code"] < 300, record
    tender.refresh_from_db()
    assert tender.status == TenderStatus.REJECTED
    assert Offer.objects.get(tender=tender).source == "webhook"
