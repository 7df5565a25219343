"""Carrier onboarding end to end in headless Chromium, against the carrier simulator as the carrier's sandbox.

A carrier manager invites a carrier; its integration lead opens the link, creates the account, sets
up a one-time code, fills in the profile and the certificate of insurance, and runs the
certification, which passes; once an SLA contract is in force the manager approves go-live, and the
carrier's first tender is accepted.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_otp.oath import totp
from playwright.sync_api import Page, expect

from missions.choices import CarrierStatus, TenderStatus
from missions.models import Carrier, Mission
from missions.onboarding import golive
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.browser.conftest import LiveServer
from tests.browser.support import NetworkLog, login, off_loop, screenshot
from tests.conftest import make_user
from tests.factories import ContractFactory, ShipmentFactory, VehicleFactory
from tests.servers import free_port, start_app_server
from tests.tendering.helpers import tender_to
from tms_console.roles import CARRIER_MANAGER

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
LEAD_PASSWORD = "a-long-and-unusual-passphrase-42"


@pytest.fixture
def sandbox() -> Iterator[CarrierSimulator]:
    sim = CarrierSimulator(SimConfig(policy={"accept": 1.0}, seed=7, vehicles=["SIM-001"])).start()
    yield sim
    sim.stop()


@pytest.fixture
def onboarding_url(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    """The console as the browser tests serve it, allowed to call the simulator on this machine and
    knowing its own URL (the sandbox sends its side of certification there)."""
    port = free_port()
    app = start_app_server(
        "daphne",
        log_path=tmp_path / "server.log",
        env={
            "EGRESS_ALLOWED_NETWORKS": "127.0.0.1/32",
            "EGRESS_ALLOW_HTTP": "1",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CERTIFICATION_TELEMETRY_SECONDS": "2",
        },
        application="tests.browser.server_app:application",
        port=port,
    )
    try:
        yield LiveServer(app=app, access_log_path=tmp_path / "access.log").url
    finally:
        app.stop()


def _code_from_key(key_base32: str) -> str:
    key = base64.b32decode(key_base32 + "=" * (-len(key_base32) % 8))
    return str(totp(key, step=30, t0=0, digits=6, drift=0)).zfill(6)


def _sign_out(page: Page) -> None:
    """The next person at the keyboard: a browser without this session."""
    page.context.clear_cookies()


def test_invite_certify_go_live_and_first_tender(
    page: Page, onboarding_url: str, sandbox: CarrierSimulator, network: NetworkLog, tmp_path: Path
) -> None:
    base = onboarding_url
    manager: User = make_user("carol", CARRIER_MANAGER)

    # The carrier manager invites the carrier; the link is shown once.
    login(page, base, manager, next_path="/carriers/onboarding/")
    page.get_by_label("Carrier's legal name").fill("Lonestar Autonomy LLC")
    page.get_by_label("Email of its integration contact").fill("ops@lonestar.example")
    page.get_by_role("button", name="Invite").click()
    link = page.get_by_test_id("invitation-link").inner_text().strip()
    assert "/portal/invitations/" in link
    manager_cookies = page.context.cookies()  # the manager's signed-in session, for later
    _sign_out(page)

    # The carrier's integration lead creates the account, then sets up a one-time code.
    page.goto(base + link[link.index("/portal/invitations/") :])
    page.get_by_label("User name").fill("lonestar-ops")
    page.locator('input[name="password"]').fill(LEAD_PASSWORD)
    page.locator('input[name="password_again"]').fill(LEAD_PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    page.locator('input[name="auth-username"]').fill("lonestar-ops")
    page.locator('input[name="auth-password"]').fill(LEAD_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
    while not page.locator("code.auth-code-inline").count():
        method = page.locator('input[value="generator"]')
        if method.count():
            method.check()
        page.get_by_role("button", name="Continue").click()
    # What the authenticator app reads from the QR code: the otpauth URI's secret.
    otpauth = page.locator('a[href^="otpauth://"]').get_attribute("href") or ""
    key = parse_qs(urlsplit(otpauth).query)["secret"][0]
    page.locator('input[name="generator-token"]').fill(_code_from_key(key))
    page.get_by_role("button", name="Continue").click()
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/portal/")
    expect(page.get_by_test_id("carrier-status")).to_contain_text("Onboarding")

    # Profile: the simulator is both its sandbox and its production API.
    form = page.get_by_test_id("profile-form")
    form.get_by_label("SCAC").fill("LSTA")
    form.get_by_label("USDOT number").fill("3456789")
    form.get_by_label("Sandbox API base URL").fill(sandbox.url)
    form.get_by_label("Sandbox OAuth client id").fill("sim-carrier")
    form.get_by_label("Sandbox OAuth client secret").fill("sim-secret")
    form.get_by_label("Production API base URL").fill(sandbox.url)
    form.get_by_label("Production OAuth client id").fill("sim-carrier")
    form.get_by_label("Production OAuth client secret").fill("sim-secret")
    form.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Profile saved.")).to_be_visible()

    # The sandbox's credentials for our API, shown once; the lead puts them into the sandbox.
    page.get_by_role("button", name="Issue sandbox credentials").click()
    issued = {
        "client_id": page.get_by_test_id("sandbox-client-id").inner_text().strip(),
        "client_secret": page.get_by_test_id("sandbox-client-secret").inner_text().strip(),
        "webhook_secret": page.get_by_test_id("sandbox-webhook-secret").inner_text().strip(),
    }
    sandbox.sandbox_set(**issued)
    page.get_by_role("link", name="Back to the portal").click()
    expect(page.get_by_test_id("sandbox-client")).to_contain_text(issued["client_id"])

    # The certificate of insurance.
    today = timezone.localdate()
    docs = page.get_by_test_id("document-form")
    docs.get_by_label("PDF file").set_input_files({"name": "coi.pdf", "mimeType": "application/pdf", "buffer": PDF})
    docs.get_by_label("Insurer").fill("Great Plains Mutual")
    docs.get_by_label("Policy number").fill("GPM-1")
    docs.get_by_label("Auto liability (USD)").fill("1000000")
    docs.get_by_label("Cargo (USD)").fill("100000")
    docs.get_by_label("Effective from").fill((today - timedelta(days=1)).isoformat())
    docs.get_by_label("Expires on").fill((today + timedelta(days=365)).isoformat())
    docs.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("Certificate of insurance accepted.")).to_be_visible()

    # Certification against the sandbox.
    page.get_by_role("button", name="Run certification").click()
    expect(page.get_by_test_id("run-status")).to_contain_text("Passed", timeout=30_000)
    expect(page.get_by_test_id("check-idempotent_resend")).to_contain_text("passed")
    expect(page.get_by_test_id("check-carrier_webhooks")).to_contain_text("1 signed webhook(s) verified")
    expect(page.get_by_test_id("check-carrier_telemetry")).to_contain_text("passed")
    expect(page.get_by_test_id("certificate")).to_be_visible()
    screenshot(page, "onboarding-certification")
    _sign_out(page)

    # An SLA contract is signed meanwhile; the manager approves go-live.
    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")
    off_loop(ContractFactory, carrier=carrier)
    off_loop(golive.onboarding_reason_refresh, carrier.pk)
    page.context.add_cookies(manager_cookies)  # type: ignore[arg-type]  # back at the manager browser
    page.goto(f"{base}/carriers/onboarding/")
    page.get_by_role("button", name="Approve go-live").click()
    expect(page.get_by_text("Lonestar Autonomy LLC is live")).to_be_visible()
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ACTIVE

    # The first tender goes to the carrier's production API and is accepted.
    off_loop(VehicleFactory, carrier=carrier, external_id="SIM-001")
    shipment = off_loop(ShipmentFactory)
    tender = off_loop(tender_to, shipment, carrier)
    assert tender.status == TenderStatus.ACCEPTED
    assert Mission.objects.filter(tender=tender, carrier=carrier).exists()
    network.assert_loopback_only()
