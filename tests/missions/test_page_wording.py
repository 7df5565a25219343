"""How console pages word things: runbook and paging events on timelines, units, the shipment tender forms."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from missions.choices import TenderStatus
from missions.models import AuditEvent
from missions.templatetags.console_tags import event_summary, event_title, unit_label
from tests.conftest import verified_client
from tests.factories import ShipmentFactory, TenderFactory

STEP = {"step": 4, "title": "Confirm the vehicle and scene are safe"}


def event(action: str, data: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent(action=action, data=data or {}, before={}, after=after or {})


@pytest.mark.parametrize(
    ("action", "data", "summary"),
    [
        ("runbook.step_waiting", {}, "Waiting for on-call to confirm"),
        ("runbook.step_confirmed", {"note": "No injuries."}, "Confirmed · Note: No injuries."),
        ("runbook.step_skipped", {"reason": "Done by the carrier."}, "Skipped · Reason: Done by the carrier."),
        ("runbook.step_done", {"result": {"paged": False, "note": ""}}, "Done · Result: paged: False"),
        ("runbook.step_failed", {"error": "HTTP 503", "attempts": 3}, "Failed after 3 attempts · Error: HTTP 503"),
        ("runbook.step_retrying", {"error": "timeout", "attempt": 1}, "Retrying (attempt 1 failed) · Error: timeout"),
    ],
)
def test_step_events_name_the_step_and_say_what_happened(action: str, data: dict[str, Any], summary: str) -> None:
    ev = event(action, {**STEP, **data}, after={"status": "done"})
    assert event_title(ev) == "Step 4: Confirm the vehicle and scene are safe"
    # The outcome replaces the raw "status: done" the generic wording would show.
    assert event_summary(ev) == summary


def test_a_long_step_note_is_cut_short() -> None:
    summary = event_summary(event("runbook.step_confirmed", {**STEP, "note": "word " * 100}))
    assert summary.startswith("Confirmed · Note: word word") and summary.endswith("…")
    assert len(summary) < 230


@pytest.mark.parametrize(
    ("action", "data", "title", "summary"),
    [
        ("runbook.started", {"runbook": "emergency-stop", "version": 2}, "Runbook started", "emergency-stop v2"),
        ("incident.page_queued", {"event_action": "trigger"}, "Page queued", "PagerDuty trigger"),
        (
            "incident.paged",
            {"event_action": "trigger", "status": 202, "attempts": 1},
            "On-call paged",
            "PagerDuty trigger · HTTP 202 · 1 attempt",
        ),
        (
            "incident.page_failed",
            {"event_action": "resolve", "error": "HTTP 500", "attempts": 2},
            "Page failed",
            "PagerDuty resolve · 2 attempts · Error: HTTP 500",
        ),
        ("incident.note", {"text": "Carrier desk called."}, "Note", "Carrier desk called."),
    ],
)
def test_incident_events_have_their_own_wording(action: str, data: dict[str, Any], title: str, summary: str) -> None:
    ev = event(action, data)
    assert (event_title(ev), event_summary(ev)) == (title, summary)


def test_other_events_keep_the_generic_wording() -> None:
    ev = AuditEvent(
        action="tender.status_changed", data={"reason": "late"}, before={"status": "sent"}, after={"status": "accepted"}
    )
    assert event_title(ev) == "Tender status changed"
    assert event_summary(ev) == "status: sent → accepted · reason: late"


def test_units_read_as_symbols() -> None:
    assert [unit_label(u) for u in ("pct", "seconds", "ms", "", "kWh")] == ["%", "s", "ms", "", "kWh"]


@pytest.mark.django_db
def test_shipment_page_offers_no_second_tender_to_a_carrier_with_an_open_one(
    dispatcher: User, carrier_a: Any, carrier_b: Any
) -> None:
    shipment = ShipmentFactory()
    url = reverse("missions:shipment_detail", kwargs={"pk": shipment.pk})
    client = verified_client(dispatcher)

    before = client.get(url)
    eligible = {c.pk for c in before.context["tender_form"].fields["carrier"].queryset}
    assert carrier_a.pk in eligible, "the test needs carrier_a to be eligible"
    html = before.content.decode()
    assert "Start waterfall" in html and html.count("Offered price (USD)") == 2

    tender = TenderFactory(shipment=shipment, carrier=carrier_a, status=TenderStatus.SENT)
    after = client.get(url)
    offered = {c.pk for c in after.context["tender_form"].fields["carrier"].queryset}
    assert offered == eligible - {carrier_a.pk}
    html = after.content.decode()
    # The waterfall would be refused while a tender is open: the page says why instead of offering it.
    assert "Start waterfall" not in html
    assert f"Not available while a tender is open (#{tender.pk} to {carrier_a.name})" in html
    assert f"Open tender #{tender.pk}" in html
