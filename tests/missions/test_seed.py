"""The demo seed: idempotent, built through the services, and its logins work with real one-time codes."""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.choices import CarrierKind, CarrierStatus, MissionStatus, ShipmentStatus, TenderStatus
from missions.models import AuditEvent, Carrier, CarrierProfile, Mission, Offer, Shipment, Tender, Vehicle
from sla.models import Contract
from tms_console.demo import DEFAULT_DEMO_PASSWORD, demo_totp_key

PASSWORD = "seed-test-password-42"
DEMO_USERNAMES = {"demo-dispatcher", "demo-oncall", "demo-admin", "demo-viewer", "demo-sla"}
COUNTED = (User, Group, TOTPDevice, Carrier, Vehicle, Contract, Shipment, Tender, Offer, Mission, AuditEvent)


def seed(**kwargs: Any) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **kwargs)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch, db: Any) -> Iterator[str]:
    monkeypatch.setenv("DEMO_PASSWORD", PASSWORD)
    # A port bound but not listening refuses connections: the seed's hand-over to a running simulator
    # fails fast here and never reaches a simulator someone runs on this machine.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        monkeypatch.setenv("CARRIER_SIM_URL", url)
        yield url


def test_seed_twice_changes_nothing(demo_env: None) -> None:
    seed()
    first = counts()
    snapshot = {
        "keys": dict(TOTPDevice.objects.values_list("user__username", "key")),
        "shipments": sorted(Shipment.objects.values_list("reference", "status")),
        "missions": sorted(Mission.objects.values_list("id", "status", "updated_at")),
        "passwords": dict(User.objects.values_list("username", "password")),
    }
    output = seed()
    assert counts() == first
    assert snapshot == {
        "keys": dict(TOTPDevice.objects.values_list("user__username", "key")),
        "shipments": sorted(Shipment.objects.values_list("reference", "status")),
        "missions": sorted(Mission.objects.values_list("id", "status", "updated_at")),
        "passwords": dict(User.objects.values_list("username", "password")),
    }
    assert "nothing new" in output
    assert first["Shipment"] >= 8
    assert first["User"] == len(DEMO_USERNAMES) + 1  # and the onboarding carrier's portal lead


def test_seed_creates_the_described_carriers(demo_env: str) -> None:
    seed()
    autonomous = Carrier.objects.filter(kind=CarrierKind.AUTONOMOUS).exclude(status=CarrierStatus.ONBOARDING)
    assert autonomous.count() == 3  # one of them covers the Chicago - Los Angeles lane
    for carrier in autonomous:
        assert carrier.api_base_url == f"{demo_env}/carriers/{carrier.slug}"
        assert carrier.api_token_url and carrier.api_client_id and carrier.api_client_secret
        assert not carrier.is_fallback
    fallback = Carrier.objects.get(is_fallback=True)
    assert fallback.kind == CarrierKind.HUMAN_DRIVEN
    assert fallback.fallback_rate_usd_per_km is not None and fallback.fallback_rate_usd_per_km > 0
    assert (fallback.api_base_url, fallback.api_token_url, fallback.api_client_id) == ("", "", "")
    for carrier in Carrier.objects.all():
        carrier.full_clean()
        assert carrier.vehicles.exists()
        assert Contract.objects.filter(carrier=carrier).count() == 1
    assert Vehicle.objects.filter(external_id="LSA-101").exists()


def test_seed_follows_the_simulator_url_from_the_environment(demo_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seed()
    monkeypatch.setenv("CARRIER_SIM_URL", "http://127.0.0.1:9911/")
    seed()
    for carrier in Carrier.objects.filter(kind=CarrierKind.AUTONOMOUS).exclude(status=CarrierStatus.ONBOARDING):
        assert carrier.api_base_url.startswith("http://127.0.0.1:9911/carriers/")
    onboarding = CarrierProfile.objects.get(carrier__status=CarrierStatus.ONBOARDING)
    assert onboarding.sandbox_api_url == "http://127.0.0.1:9911/carriers/prairie-autonomy"
    assert Carrier.objects.get(is_fallback=True).api_base_url == ""


def test_seed_shipments_cover_every_state_through_the_services(demo_env: None) -> None:
    seed()
    statuses = set(Shipment.objects.values_list("status", flat=True))
    assert {
        ShipmentStatus.OPEN,
        ShipmentStatus.TENDERING,
        ShipmentStatus.ASSIGNED,
        ShipmentStatus.IN_TRANSIT,
        ShipmentStatus.DELIVERED,
    } <= statuses
    assert Tender.objects.filter(status=TenderStatus.SENT).exists()
    assert {MissionStatus.ASSIGNED, MissionStatus.EN_ROUTE, MissionStatus.COMPLETED} <= set(
        Mission.objects.values_list("status", flat=True)
    )
    for shipment in Shipment.objects.all():
        shipment.full_clean()
        actions = set(shipment.events.values_list("action", flat=True))
        assert "shipment.created" in actions
        if shipment.status == ShipmentStatus.DELIVERED:
            assert {"tender.created", "offer.accept", "mission.created", "mission.status_changed"} <= actions
        # Every lane is within the continental US.
        assert 24 < shipment.origin_lat < 50 and -125 < shipment.origin_lon < -66
    # A completed mission's timeline walked the state machine in order.
    done = Mission.objects.filter(status=MissionStatus.COMPLETED).first()
    assert done is not None
    moves = [e.after["status"] for e in done.events.filter(action="mission.status_changed").order_by("id")]
    assert moves == [MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.COMPLETED]


def test_seed_users_have_their_role_and_a_fixed_totp_key(demo_env: None) -> None:
    output = seed()
    roles = {u.username: set(u.groups.values_list("name", flat=True)) for u in User.objects.all()}
    assert roles == {
        "demo-dispatcher": {"dispatcher"},
        "demo-oncall": {"on-call"},
        "demo-admin": {"admin"},
        "demo-viewer": {"read-only"},
        "demo-sla": {"sla-manager"},
        "demo-carrier": set(),  # a carrier's portal member: no console role
    }
    lead = User.objects.get(username="demo-carrier")
    assert lead.carrier_member.carrier.name == "Prairie Autonomy LLC" and lead.check_password(PASSWORD)
    assert TOTPDevice.objects.get(user=lead).key == demo_totp_key("demo-carrier")
    admin = User.objects.get(username="demo-admin")
    assert admin.is_superuser and admin.is_staff
    assert not User.objects.get(username="demo-viewer").is_staff
    for username in DEMO_USERNAMES:
        user = User.objects.get(username=username)
        assert user.check_password(PASSWORD)
        device = TOTPDevice.objects.get(user=user)
        assert device.confirmed
        assert device.key == demo_totp_key(username)
        b32 = base64.b32encode(bytes.fromhex(device.key)).decode().rstrip("=")
        assert b32 in output
        assert f"otpauth://totp/TMS%20Console%3A{username}?secret={b32}" in output
        assert f"make otp OTP_USER={username}" in output
    assert PASSWORD in output


def test_seed_refuses_the_default_password_without_debug(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DEMO_PASSWORD"):
        seed()
    assert not User.objects.exists()


def test_seed_uses_the_default_password_with_debug(db: Any, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    settings.DEBUG = True
    seed(quiet_logins=True)
    assert User.objects.get(username="demo-dispatcher").check_password(DEFAULT_DEMO_PASSWORD)


def test_demo_otp_prints_a_code_that_verifies(demo_env: None) -> None:
    seed(quiet_logins=True)
    out, err = StringIO(), StringIO()
    call_command("demo_otp", "demo-oncall", stdout=out, stderr=err)
    code = out.getvalue().strip()
    assert re.fullmatch(r"\d{6}", code)
    device = TOTPDevice.objects.get(user__username="demo-oncall")
    assert device.verify_token(code)
    # Single use: the same code cannot be verified twice.
    assert not device.verify_token(code)


def test_demo_otp_explains_a_missing_user_or_device(demo_env: None) -> None:
    with pytest.raises(CommandError, match="No user named"):
        call_command("demo_otp", "nobody", stdout=StringIO())
    User.objects.create_user(username="no-device", password=PASSWORD)
    with pytest.raises(CommandError, match="no confirmed TOTP device"):
        call_command("demo_otp", "no-device", stdout=StringIO())


def test_demo_dispatcher_signs_in_with_password_and_demo_otp_code(demo_env: None) -> None:
    seed(quiet_logins=True)
    out = StringIO()
    call_command("demo_otp", "demo-dispatcher", stdout=out, stderr=StringIO())
    client = Client()
    client.post(
        "/account/login/",
        {"login_view-current_step": "auth", "auth-username": "demo-dispatcher", "auth-password": PASSWORD},
    )
    response = client.post(
        "/account/login/", {"login_view-current_step": "token", "token-otp_token": out.getvalue().strip()}
    )
    assert response.status_code == 302
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    # The seeded missions show up on the dashboard.
    assert Mission.objects.first().shipment.reference in dashboard.content.decode()  # type: ignore[union-attr]


def test_trucks_on_the_road_have_reported_their_position_as_of_the_seed(demo_env: None) -> None:
    from missions.choices import MissionStatus
    from missions.models import Mission, TelemetrySample

    seed()
    on_the_road = Mission.objects.filter(status=MissionStatus.EN_ROUTE)
    assert on_the_road.count() == 2
    for mission in on_the_road:
        # Without it the minute before the fleet simulator's first report burns the telemetry budget.
        assert mission.last_seen_at is not None
        assert TelemetrySample.objects.filter(mission=mission, recorded_at=mission.last_seen_at).count() == 1
