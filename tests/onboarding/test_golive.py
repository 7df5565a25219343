"""The go-live gate: certified, an SLA contract in force, insured, production API named; a manager approves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from missions.choices import CarrierStatus, TenderStatus
from missions.events import Actor
from missions.models import AuditEvent, Carrier, Mission
from missions.onboarding import certification, tasks
from missions.selectors import carrier_fit
from missions.simulators.carrier import CarrierSimulator
from tests.conftest import verified_client
from tests.factories import ContractFactory, ShipmentFactory, VehicleFactory
from tests.onboarding.test_compliance import PDF
from tests.onboarding.test_portal import _portal_client
from tests.tendering.helpers import tender_to

pytestmark = pytest.mark.django_db


def _insurance() -> dict[str, Any]:
    today = timezone.localdate()
    return {
        "kind": "insurance",
        "file": SimpleUploadedFile("coi.pdf", PDF, content_type="application/pdf"),
        "insurer": "Great Plains Mutual",
        "policy_number": "GPM-1",
        "auto_liability_usd": "1000000",
        "cargo_usd": "100000",
        "effective_on": (today - timedelta(days=10)).isoformat(),
        "expires_on": (today + timedelta(days=355)).isoformat(),
    }


def _go_live_cell(client: Any, carrier: Carrier) -> str:
    page = client.get("/carriers/onboarding/").content.decode()
    start = page.index(f'data-testid="go-live-{carrier.slug}"')
    return page[start : page.index("</td>", start)]


def test_a_carrier_goes_live_only_with_everything_and_a_managers_approval_then_gets_its_first_tender(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    console = verified_client(manager)
    cell = _go_live_cell(console, carrier)
    assert "no passing certification for carrier API 1.1.0" in cell and "no SLA contract in force" in cell
    assert "no valid certificate of insurance" in cell and "Approve go-live" not in cell
    refused = console.post(f"/carriers/onboarding/{carrier.pk}/go-live/", follow=True)
    assert "cannot go live yet" in refused.content.decode()
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ONBOARDING

    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    assert tasks.certification_run(run.pk) == "passed"
    carrier.refresh_from_db()
    fit = carrier_fit(carrier=carrier, shipment=ShipmentFactory.build())
    assert (
        "onboarding: not live yet: no SLA contract in force; no production API URL and client id in the profile;"
        " no valid certificate of insurance"
    ) in fit.reasons

    member = _portal_client()
    assert member.post("/portal/documents/", _insurance()).status_code == 302
    page = member.get("/portal/").content.decode()
    assert "Still needed: no SLA contract in force; no production API URL and client id in the profile." in page
    profile = {
        "legal_name": "Lonestar Autonomy LLC", "odd_hours": "00:00-24:00", "auth_method": "oauth_client_credentials",
        "sandbox_api_url": sandbox.url, "sandbox_client_id": "sim-carrier",
        "production_api_url": sandbox.url, "production_client_id": "sim-carrier",
        "production_client_secret": "sim-secret",
    }  # fmt: skip
    assert member.post("/portal/", profile).status_code == 302
    ContractFactory(carrier=carrier)
    tasks.compliance_watch()  # hourly: the stated reason catches up with the contract signed meanwhile
    carrier.refresh_from_db()
    assert carrier.paused_reason == "ready to go live, awaiting approval"
    assert "a carrier manager approves your go-live" in member.get("/portal/").content.decode()
    assert "Approve go-live" in _go_live_cell(console, carrier)

    approved = console.post(f"/carriers/onboarding/{carrier.pk}/go-live/", follow=True)

    assert "is live" in approved.content.decode()
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ACTIVE and carrier.paused_reason == ""
    event = AuditEvent.objects.get(action="carrier.went_live")
    assert event.actor_label == "carol" and event.after is not None and event.after["certification_run"] == run.pk
    assert not any(
        r.startswith("onboarding") for r in carrier_fit(carrier=carrier, shipment=ShipmentFactory.build()).reasons
    )
    assert (carrier.api_base_url, carrier.api_client_id) == (sandbox.url, "sim-carrier")

    # The first production tender: to the carrier's API, accepted, a mission.
    VehicleFactory(carrier=carrier, external_id="SIM-001")
    with django_capture_on_commit_callbacks(execute=True):  # the send task runs after the commit
        tender = tender_to(ShipmentFactory(), carrier)
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED
    assert Mission.objects.get(tender=tender).carrier_id == carrier.pk


def test_only_carrier_managers_approve_and_a_live_carrier_is_not_approved_twice(
    carrier: Carrier,
    manager: User,
    dispatcher: User,
) -> None:
    assert verified_client(dispatcher).post(f"/carriers/onboarding/{carrier.pk}/go-live/").status_code == 403
    Carrier.objects.filter(pk=carrier.pk).update(status=CarrierStatus.ACTIVE)

    answer = verified_client(manager).post(f"/carriers/onboarding/{carrier.pk}/go-live/", follow=True)

    assert "is not onboarding" in answer.content.decode()
    assert not AuditEvent.objects.filter(action="carrier.went_live").exists()
