"""Console pages where platform admins create partner clients and rotate secrets (shown once)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from oauth2_provider.models import Application

from missions.models import AuditEvent, Carrier, PartnerClient, WebhookReceipt, WebhookSecret
from missions.models.partner import CertificateKind
from missions.partner.services import IssuedClient
from missions.partner.tasks import webhook_receipts_purge
from tests.conftest import verified_client
from tests.partner.conftest import api_client, fetch_token, issue_client

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


def test_admin_registers_the_certificate_of_a_new_client(admin_user: User, carrier_a: Carrier) -> None:
    Carrier.objects.filter(pk=carrier_a.pk).update(require_mtls=True)
    client = verified_client(admin_user)
    form = {"carrier": carrier_a.pk, "name": "Gateway", "scopes": ["tender:read"]}
    refused = client.post("/partners/clients/new/", form)
    assert refused.status_code == 400
    assert "requires mutual TLS: register the certificate" in refused.content.decode()
    assert not PartnerClient.objects.exists()
    created = client.post(
        "/partners/clients/new/",
        {**form, "certificate_kind": CertificateKind.SUBJECT_DN, "certificate_value": "cn = gateway-a, o = Carrier A"},
    )
    assert created.status_code == 200
    partner = PartnerClient.objects.get()
    assert (partner.certificate_kind, partner.certificate_value) == (
        CertificateKind.SUBJECT_DN,
        "CN=gateway-a,O=Carrier A",
    )
    listing = client.get("/partners/").content.decode()
    assert "CN=gateway-a,O=Carrier A" in listing


def test_a_certificate_value_that_cannot_match_is_shown_as_a_field_error(admin_user: User, carrier_a: Carrier) -> None:
    response = verified_client(admin_user).post(
        "/partners/clients/new/",
        {
            "carrier": carrier_a.pk,
            "name": "Gateway",
            "scopes": ["tender:read"],
            "certificate_kind": CertificateKind.SUBJECT_DN,
            "certificate_value": "/C=US/CN=gateway-a",
        },
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert "RFC 4514" in " ".join(form.errors["certificate_value"])
    assert not PartnerClient.objects.exists()


def test_admin_registers_changes_and_clears_the_certificate_of_an_existing_client(
    admin_user: User, carrier_a: Carrier
) -> None:
    issued = issue_client(carrier_a)
    token = fetch_token(issued)["access_token"]
    client = verified_client(admin_user)
    url = f"/partners/clients/{issued.client.pk}/certificate/"
    prefix = f"c{issued.client.pk}"
    hex_thumbprint = "AB:" * 31 + "CD"
    saved = client.post(url, {f"{prefix}-certificate_kind": "x5t#S256", f"{prefix}-certificate_value": hex_thumbprint})
    assert saved.status_code == 302
    partner = PartnerClient.objects.get()
    assert partner.certificate_kind == "x5t#S256" and len(partner.certificate_value) == 43
    # Tokens issued under the old registration are revoked with the change.
    assert api_client(token).get("/api/v1/capabilities").status_code == 401
    bad = client.post(url, {f"{prefix}-certificate_kind": "tls_client_auth_san_ip", f"{prefix}-certificate_value": "x"})
    assert bad.status_code == 400
    page = bad.content.decode()
    assert "Not an IPv4 or IPv6 address." in page and "<details open>" in page
    assert PartnerClient.objects.get().certificate_kind == "x5t#S256"  # unchanged
    cleared = client.post(url, {f"{prefix}-certificate_kind": "", f"{prefix}-certificate_value": ""})
    assert cleared.status_code == 302
    assert not PartnerClient.objects.get().has_certificate
    actions = list(
        AuditEvent.objects.filter(action="partner_client.certificate_changed").values_list("after", flat=True)
    )
    assert actions == [{"certificate": {"x5t#S256": partner.certificate_value}}, {"certificate": None}]


def test_a_client_of_an_mtls_carrier_cannot_drop_its_certificate(admin_user: User, carrier_a: Carrier) -> None:
    issued = issue_client(carrier_a)
    Carrier.objects.filter(pk=carrier_a.pk).update(require_mtls=True)
    client = verified_client(admin_user)
    listing = client.get("/partners/").content.decode()
    assert "requires mTLS, so this client gets no token until one is registered" in listing
    prefix = f"c{issued.client.pk}"
    response = client.post(
        f"/partners/clients/{issued.client.pk}/certificate/",
        {f"{prefix}-certificate_kind": "", f"{prefix}-certificate_value": ""},
    )
    assert response.status_code == 400
    assert "requires mutual TLS" in response.content.decode()
