"""Carrier onboarding: a manager invites, the invitation makes one portal account, the portal keeps a profile."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.choices import CarrierStatus
from missions.models import AuditEvent, Carrier, CarrierInvitation, CarrierMember, CarrierProfile
from missions.onboarding import services
from missions.selectors import carrier_fit
from tests.conftest import make_user, verified_client
from tests.factories import ShipmentFactory
from tms_console.roles import CARRIER_MANAGER

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-and-unusual-passphrase-42"


@pytest.fixture
def manager(db: Any) -> User:
    return make_user("carol", CARRIER_MANAGER)


@pytest.fixture
def manager_client(manager: User) -> Client:
    return verified_client(manager)


def _invite(client: Client, name: str = "Lonestar Autonomy LLC", email: str = "Ops@Lonestar.example") -> str:
    answer = client.post("/carriers/onboarding/", {"legal_name": name, "email": email})
    assert answer.status_code == 200, answer.content.decode()[:400]
    link = re.search(r'data-testid="invitation-link">([^<]+)<', answer.content.decode())
    assert link is not None
    return link.group(1).rsplit("/portal/invitations/", 1)[1].rstrip("/")


def _accept(token: str, username: str = "lonestar-ops", password: str = PASSWORD) -> Any:
    return Client().post(
        f"/portal/invitations/{token}/",
        {"username": username, "password": password, "password_again": password},
    )


def _portal_client(username: str = "lonestar-ops") -> Client:
    """The member after their first sign-in: one-time code device set up and verified."""
    user = User.objects.get(username=username)
    TOTPDevice.objects.create(user=user, name="default", confirmed=True)
    return verified_client(user)


def test_an_invitation_creates_an_onboarding_carrier_mails_the_link_and_stores_only_its_digest(
    manager_client: Client,
) -> None:
    token = _invite(manager_client)

    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")
    assert carrier.status == CarrierStatus.ONBOARDING and carrier.slug == "lonestar-autonomy-llc"
    assert CarrierProfile.objects.get(carrier=carrier).legal_name == "Lonestar Autonomy LLC"
    invitation = CarrierInvitation.objects.get(carrier=carrier)
    assert invitation.email == "ops@lonestar.example"
    assert invitation.token_sha256 == services.token_digest(token) and token not in invitation.token_sha256
    assert timedelta(hours=167) < invitation.expires_at - timezone.now() <= timedelta(hours=168)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@lonestar.example"]
    assert f"/portal/invitations/{token}/" in mail.outbox[0].body
    event = AuditEvent.objects.get(action="carrier.invited")
    assert event.actor_label == "carol" and event.carrier_id == carrier.pk and token not in str(event.data)
    listed = manager_client.get("/carriers/onboarding/").content.decode()
    assert "Lonestar Autonomy LLC" in listed and "open until" in listed


@pytest.mark.parametrize(
    ("name", "email", "error"),
    [
        ("", "ops@x.example", "This field is required"),
        ("Lonestar", "not-an-address", "Enter a valid email address"),
        ("Demo Autonomous", "ops@x.example", "exists already"),
    ],
)
def test_a_bad_invitation_is_a_form_error_and_stores_nothing(
    manager_client: Client, name: str, email: str, error: str
) -> None:
    Carrier.objects.create(name="Demo Autonomous", slug="demo-autonomous", kind="autonomous")
    before = (Carrier.objects.count(), CarrierInvitation.objects.count())

    answer = manager_client.post("/carriers/onboarding/", {"legal_name": name, "email": email})

    assert answer.status_code == 400 and error in answer.content.decode()
    assert (Carrier.objects.count(), CarrierInvitation.objects.count()) == before
    assert not mail.outbox


def test_only_carrier_managers_invite(dispatcher: User) -> None:
    client = verified_client(dispatcher)

    assert client.get("/carriers/onboarding/").status_code == 403
    assert client.post("/carriers/onboarding/", {"legal_name": "X", "email": "x@x.example"}).status_code == 403
    assert not Carrier.objects.filter(name="X").exists()


def test_the_link_creates_one_account_then_works_no_more(manager_client: Client) -> None:
    token = _invite(manager_client)
    page = Client().get(f"/portal/invitations/{token}/")
    assert page.status_code == 200 and "Lonestar Autonomy LLC" in page.content.decode()

    answer = _accept(token)

    assert answer.status_code == 302 and answer["Location"].startswith("/account/login/")
    member = CarrierMember.objects.select_related("user", "carrier").get()
    assert member.user.username == "lonestar-ops" and member.user.email == "ops@lonestar.example"
    assert member.carrier.name == "Lonestar Autonomy LLC"
    assert not member.user.groups.exists() and not member.user.is_staff
    again = _accept(token, username="someone-else")
    assert again.status_code == 410 and "used already" in again.content.decode()
    assert Client().get(f"/portal/invitations/{token}/").status_code == 410
    assert User.objects.filter(username="someone-else").count() == 0
    assert AuditEvent.objects.filter(action="carrier.invitation_accepted").count() == 1


def test_an_expired_withdrawn_or_unknown_link_is_refused_with_words(manager_client: Client) -> None:
    expired = _invite(manager_client, name="Late Carrier")
    withdrawn = _invite(manager_client, name="Withdrawn Carrier", email="w@w.example")
    invitation = CarrierInvitation.objects.get(carrier__name="Withdrawn Carrier")
    assert manager_client.post(f"/carriers/onboarding/invitations/{invitation.pk}/revoke/").status_code == 302

    with time_machine.travel(timezone.now() + timedelta(hours=169)):
        late = _accept(expired)
    assert late.status_code == 410 and "expired" in late.content.decode()
    gone = _accept(withdrawn)
    assert gone.status_code == 410 and "withdrawn" in gone.content.decode()
    unknown = _accept("not-a-token")
    assert unknown.status_code == 404 and "not valid" in unknown.content.decode()
    assert not CarrierMember.objects.exists()


def test_a_weak_password_or_a_taken_name_is_a_form_error_and_the_link_still_works(
    manager_client: Client, dispatcher: User
) -> None:
    token = _invite(manager_client)

    weak = _accept(token, password="password")
    taken = _accept(token, username=dispatcher.username)
    mismatch = Client().post(
        f"/portal/invitations/{token}/", {"username": "x-ops", "password": PASSWORD, "password_again": PASSWORD + "!"}
    )

    assert weak.status_code == 400 and "too common" in weak.content.decode()
    assert taken.status_code == 400 and "taken" in taken.content.decode()
    assert mismatch.status_code == 400 and "differ" in mismatch.content.decode()
    assert not CarrierMember.objects.exists()
    assert _accept(token).status_code == 302


def test_a_new_member_must_set_up_a_one_time_code_before_the_portal(manager_client: Client) -> None:
    _accept(_invite(manager_client))
    client = Client()
    client.force_login(User.objects.get(username="lonestar-ops"))

    answer = client.get("/portal/")

    assert answer.status_code == 302 and answer["Location"] == "/account/two_factor/setup/"


def test_the_portal_keeps_the_profile_and_records_what_changed(manager_client: Client) -> None:
    _accept(_invite(manager_client))
    client = _portal_client()
    assert client.get("/").url == "/portal/"
    page = client.get("/portal/")
    assert page.status_code == 200 and "Onboarding" in page.content.decode()
    assert "<title>Lonestar Autonomy LLC: carrier portal · TMS Console</title>" in page.content.decode()
    assert page.content.decode().count('data-testid="profile-form"') == 1

    answer = client.post(
        "/portal/",
        {
            "legal_name": "Lonestar Autonomy LLC",
            "scac": "lsta",
            "usdot_number": "3456789",
            "mc_number": "123456",
            "contact_name": "Ada Ops",
            "contact_email": "ada@lonestar.example",
            "contact_phone": "+1 512 555 0100",
            "odd_hours": "05:00-22:00",
            "odd_max_wind_kph": "60",
            "odd_min_visibility_m": "200",
            "sandbox_api_url": "https://93.184.216.34/sandbox",
            "production_api_url": "",
            "auth_method": "mtls",
        },
    )

    assert answer.status_code == 302
    profile = CarrierProfile.objects.get(carrier__name="Lonestar Autonomy LLC")
    assert (profile.scac, profile.usdot_number, profile.odd_hours, profile.auth_method) == (
        "LSTA", "3456789", "05:00-22:00", "mtls",
    )  # fmt: skip
    event = AuditEvent.objects.get(action="carrier.profile_updated")
    assert event.actor_label == "lonestar-ops"
    assert event.after is not None and event.after["scac"] == "LSTA" and "legal_name" not in event.after


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("scac", "L1", "2 to 4 capital letters"),
        ("usdot_number", "USDOT123", "1 to 8 digits"),
        ("mc_number", "MC-12", "1 to 8 digits"),
        ("odd_hours", "5am-10pm", "HH:MM-HH:MM"),
        ("sandbox_api_url", "http://93.184.216.34/", "Only https://"),
        ("sandbox_api_url", "https://169.254.169.254/latest/", "link-local"),
        ("sandbox_api_url", "https://10.1.2.3/", "private address"),
        ("production_api_url", "https://localhost:8000/", "loopback"),
        ("sandbox_spiffe_id", "https://lonestar.example/sandbox", "A SPIFFE ID reads spiffe://"),
        ("sandbox_ca_pem", "not a certificate", "No PEM certificate found"),
        ("auth_method", "spiffe_svid", "With SPIFFE SVIDs, give the SPIFFE ID"),
        ("telemetry_rate_hz", "50", "less than or equal to 10"),
    ],
)
def test_a_bad_profile_is_a_form_error_and_changes_nothing(
    manager_client: Client, settings: Any, field: str, value: str, error: str
) -> None:
    settings.EGRESS_ALLOW_HTTP = False
    _accept(_invite(manager_client))
    client = _portal_client()
    values = {"legal_name": "Lonestar Autonomy LLC", "odd_hours": "00:00-24:00", "auth_method": "mtls"}

    answer = client.post("/portal/", {**values, field: value})

    assert answer.status_code == 400 and error in answer.content.decode()
    profile = CarrierProfile.objects.get(carrier__name="Lonestar Autonomy LLC")
    assert (profile.scac, profile.usdot_number, profile.mc_number, profile.sandbox_api_url) == ("", "", "", "")
    assert not AuditEvent.objects.filter(action="carrier.profile_updated").exists()


def test_a_member_sees_only_their_carriers_portal_and_no_console_page(manager_client: Client) -> None:
    _accept(_invite(manager_client))
    client = _portal_client()

    console = ("/shipments/", "/carriers/", "/missions/", "/incidents/", "/sla/", "/partners/", "/carriers/onboarding/")
    for path in console:
        assert client.get(path).status_code == 403, path
    assert client.post("/carriers/onboarding/", {"legal_name": "Mine", "email": "m@m.example"}).status_code == 403


def test_the_portal_is_not_found_for_console_users_and_anonymous_is_sent_to_sign_in(
    manager_client: Client,
) -> None:
    assert manager_client.get("/portal/").status_code == 404
    anonymous = Client().get("/portal/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/account/login/")


def test_a_carrier_in_onboarding_is_never_offered_a_tender(manager_client: Client) -> None:
    _invite(manager_client)
    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")

    fit = carrier_fit(carrier=carrier, shipment=ShipmentFactory.build())

    assert not fit.eligible
    assert "onboarding: not live yet: not certified, no SLA contract, no certificate of insurance" in fit.reasons


def test_a_carrier_in_onboarding_cannot_be_resumed_into_service(manager_client: Client, manager: User) -> None:
    from missions.events import Actor
    from missions.services import carrier_resume
    from tms_console.domain import DomainError

    _invite(manager_client)
    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")

    with pytest.raises(DomainError, match="goes live through its onboarding"):
        carrier_resume(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ONBOARDING


def test_the_portal_issues_sandbox_credentials_for_our_api_once_and_only_to_its_members(
    manager_client: Client,
) -> None:
    _accept(_invite(manager_client))
    client = _portal_client()
    assert 'data-testid="sandbox-client">None issued yet.' in client.get("/portal/").content.decode()

    answer = client.post("/portal/sandbox-credentials/")

    page = answer.content.decode()
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    secret = re.search(r'data-testid="sandbox-client-secret">([^<]+)<', page)
    webhook = re.search(r'data-testid="sandbox-webhook-secret">(whsec_[^<]+)<', page)
    assert secret is not None and webhook is not None
    profile = CarrierProfile.objects.select_related("sandbox_partner_client__application").get()
    client_id = profile.sandbox_partner_client.application.client_id  # type: ignore[union-attr]
    assert profile.sandbox_partner_client.scopes == {"certification:read", "certification:write"}  # type: ignore[union-attr]
    assert profile.sandbox_webhook_secret == webhook.group(1)
    portal = client.get("/portal/").content.decode()
    assert client_id in portal and secret.group(1) not in portal and webhook.group(1) not in portal
    event = AuditEvent.objects.get(action="carrier.sandbox_credentials_issued")
    assert secret.group(1) not in str(event.after) and webhook.group(1) not in str(event.after)
    assert manager_client.post("/portal/sandbox-credentials/").status_code == 404  # not a member
    assert client.get("/portal/sandbox-credentials/").status_code == 405
