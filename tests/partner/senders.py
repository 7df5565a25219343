"""A carrier with its API token and webhook secret, and the headers of the raw requests it sends.

For the tests that write requests by hand over a socket (``tests.partner.live.raw_request``):
an authenticated API call with a fresh ``Idempotency-Key``, and a webhook delivery signed
as the Standard Webhooks spec has it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from missions.choices import TenderStatus
from missions.events import Actor
from missions.models import Carrier, Mission, Tender
from missions.partner import services as partner_services
from missions.partner.api.webhooks import webhook_sign
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, TenderFactory, VehicleFactory
from tests.partner.conftest import fetch_token, issue_client


@dataclass
class Partner:
    """A carrier with a mission and a sent tender, an access token and a webhook secret."""

    carrier: Carrier
    mission: Mission
    tender: Tender
    token: str
    secret: str


def partner_make(slug_prefix: str) -> Partner:
    """A new carrier (its slug ``<slug_prefix>-<random>``) and everything it needs to send requests."""
    carrier = CarrierFactory(slug=f"{slug_prefix}-{uuid.uuid4().hex[:8]}")
    mission = MissionFactory(carrier=carrier, shipment=ShipmentFactory(), vehicle=VehicleFactory(carrier=carrier))
    tender = TenderFactory(carrier=carrier, status=TenderStatus.SENT)
    token = fetch_token(issue_client(carrier))["access_token"]
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("t")).secret
    return Partner(carrier=carrier, mission=mission, tender=tender, token=token, secret=secret)


def api_headers(partner: Partner) -> dict[str, str]:
    """An API call's headers: the partner's token, JSON, a fresh Idempotency-Key."""
    return {
        "Authorization": f"Bearer {partner.token}",
        "Content-Type": "application/json",
        "Idempotency-Key": str(uuid.uuid4()),
    }


def signed_headers(partner: Partner, body: bytes) -> dict[str, str]:
    """A webhook delivery's headers: a new id, now, and the partner's signature of ``body``."""
    webhook_id = f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": webhook_sign(secret=partner.secret, webhook_id=webhook_id, timestamp=stamp, body=body),
    }
