"""The go-live gate: certified for the current contract, an SLA contract in force, insured; then a manager approves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from missions.choices import CarrierStatus
from missions.events import Actor
from missions.models import AuditEvent, Carrier
from missions.onboarding import certification, tasks
from missions.selectors import carrier_fit
from tests.conftest import verified_client
from tests.factories import ContractFactory, ShipmentFactory
from tests.onboarding.test_compliance import PDF
from tests.onboarding.test_portal import _portal_client

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


def test_a_carrier_goes_live_only_with_all_three_and_a_managers_approval(
    carrier: Carrier,
    manager: User,
) -> None:
    console = verified_client(manager)
    cell = _go_live_cell(console, carrier)
    assert "no passing certification for carrier API 1.0.0" in cell and "no SLA contract in force" in cell
    assert "no valid certificate of insurance" in cell and "Approve go-live" not in cell
    refused = console.post(f"/carriers/onboarding/{carrier.pk}/go-live/", follow=True)
    assert "cannot go live yet" in refused.content.decode()
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ONBOARDING

    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    assert tasks.certification_run(run.pk) == "passed"
    carrier.refresh_from_db()
    fit = carrier_fit(carrier=carrier, shipment=ShipmentFactory.build())
    assert "onboarding: not live yet: no SLA contract in force; no valid certificate of insurance" in fit.reasons

    member = _portal_client()
    assert member.post("/portal/documents/", _insurance()).status_code == 302
    assert "Still needed: no SLA contract in force." in member.get("/portal/").content.decode()
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
