"""Console pages where platform admins create partner clients and rotate secrets (shown once)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from oauth2_provider.models import Application

from missions.models import AuditEvent, Carrier, PartnerClient, WebhookReceipt, WebhookSecret
from missions.partner.services import IssuedClient
from missions.partner.tasks import webhook_receipts_purge
from tests.conftest import verified_client
from tests.partner.conftest import fetch_token, issue_client

pytestmark = pytest.mark.django_db


def _secret_on(page: str) -> str:
    match = re.search(r'data-testid="secret">([^<]+)<', page)
    assert match, page
    return match.group(1)


def test_admin_creates_a_client_and_sees_the_secret_once(admin_user: User, carrier_a: Carrier) -> None:
    client = verified_client(admin_user)
    response = client.post(
        "/partners/clients/new/",
        {"carrier": carrier_a.pk, "name": "Gateway", "scopes": ["tender:read", "tender:write"]},
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = _secret_on(response.content.decode())
    partner = PartnerClient.objects.get()
    assert partner.carrier == carrier_a and partner.scopes == {"tender:read", "tender:write"}
    assert Application.objects.get().client_secret != secret
    listing = client.get("/partners/").content.decode()
    assert partner.application.client_id in listing and secret not in listing
    issued = IssuedClient(client=partner, client_id=partner.application.client_id, client_secret=secret)
    assert fetch_token(issued)["scope"] == "tender:read tender:write"
    event = AuditEvent.objects.get(action="partner_client.created")
    assert secret not in str(event.after) + str(event.data)


def test_admin_rotates_a_client_secret(admin_user: User, carrier_a: Carrier) -> None:
    issued = issue_client(carrier_a)
    response = verified_client(admin_user).post(f"/partners/clients/{issued.client.pk}/rotate/")
    new_secret = _secret_on(response.content.decode())
    assert new_secret != issued.client_secret
    assert PartnerClient.objects.get().rotated_at is not None


def test_admin_rotates_the_webhook_secret_with_overlap(admin_user: User, carrier_a: Carrier) -> None:
    client = verified_client(admin_user)
    first = _secret_on(client.post(f"/partners/carriers/{carrier_a.pk}/webhook-secret/").content.decode())
    second = _secret_on(client.post(f"/partners/carriers/{carrier_a.pk}/webhook-secret/").content.decode())
    assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
    old = WebhookSecret.objects.get(secret=first)
    assert old.valid_until is not None and old.valid_until > timezone.now()
    assert WebhookSecret.objects.get(secret=second).valid_until is None


def test_unknown_scope_is_refused(admin_user: User, carrier_a: Carrier) -> None:
    response = verified_client(admin_user).post(
        "/partners/clients/new/", {"carrier": carrier_a.pk, "name": "x", "scopes": ["root"]}
    )
    assert response.status_code == 400
    assert not PartnerClient.objects.exists()


@pytest.mark.parametrize("fixture", ["dispatcher", "oncall", "readonly", "outsider"])
def test_only_platform_admins_reach_partner_pages(
    request: pytest.FixtureRequest, fixture: str, carrier_a: Carrier
) -> None:
    client = verified_client(request.getfixturevalue(fixture))
    assert client.get("/partners/").status_code == 403
    assert client.post(f"/partners/carriers/{carrier_a.pk}/webhook-secret/").status_code == 403
    assert not WebhookSecret.objects.exists()


def test_webhook_receipts_purge_forgets_old_ids(carrier_a: Carrier) -> None:
    old = WebhookReceipt.objects.create(carrier=carrier_a, webhook_id="msg_old")
    WebhookReceipt.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=30))
    WebhookReceipt.objects.create(carrier=carrier_a, webhook_id="msg_new")
    assert webhook_receipts_purge() == 1
    assert list(WebhookReceipt.objects.values_list("webhook_id", flat=True)) == ["msg_new"]
