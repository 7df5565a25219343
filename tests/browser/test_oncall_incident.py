"""On-call staff handle an incident from the console: one-time code, acknowledge, run a manual runbook step, resolve."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Mission
from runbooks.choices import IncidentKind, IncidentSeverity, IncidentStatus, StepKind, StepStatus
from runbooks.engine import runbook_start
from runbooks.models import Incident, Runbook, RunbookStep, StepRun
from runbooks.services import incident_open
from tests.browser.support import (
    LIVE_TIMEOUT_MS,
    NetworkLog,
    assert_not_reloaded,
    login,
    mark_page,
    off_loop,
    screenshot,
)
from tests.factories import CarrierFactory, MissionFactory, VehicleFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STEP_1 = "Call the carrier's remote operations desk"
STEP_2 = "Confirm the compute unit is back within its temperature limits"


def thermal_runbook() -> Runbook:
    """A runbook of two manual checklist items, so nothing automated runs behind the test's back."""
    runbook = Runbook.objects.create(
        slug="thermal-warning", name="Compute unit thermal warning", incident_kind=IncidentKind.OTHER
    )
    RunbookStep.objects.create(
        runbook=runbook,
        position=1,
        title=STEP_1,
        kind=StepKind.MANUAL,
        instructions="Ask whether the truck should pull over at the next safe exit.",
    )
    RunbookStep.objects.create(runbook=runbook, position=2, title=STEP_2, kind=StepKind.MANUAL)
    return runbook


def open_incident(mission: Mission) -> Incident:
    """What the detectors do: open the incident, then start its runbook."""
    incident, created = incident_open(
        actor=Actor.system("detector"),
        kind=IncidentKind.OTHER,
        title="Truck LSA-301 reports a thermal warning",
        severity=IncidentSeverity.ERROR,
        mission=mission,
        summary="Thermal warning on the compute unit; the truck keeps driving.",
    )
    assert created
    runbook_start(incident_id=incident.pk, actor=Actor.system("detector"))
    return incident


def test_oncall_acknowledges_runs_a_manual_step_and_resolves_an_incident(
    page: Page, live_url: str, oncall: User, network: NetworkLog
) -> None:
    carrier = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    mission = MissionFactory(
        carrier=carrier, status=MissionStatus.EN_ROUTE, vehicle=VehicleFactory(carrier=carrier, external_id="LSA-301")
    )
    runbook = thermal_runbook()
    login(page, live_url, oncall, next_path="/incidents/")
    expect(page).to_have_url(f"{live_url}/incidents/")
    expect(page.get_by_role("heading", name="No incidents")).to_be_visible()
    expect(page.locator("[data-live-indicator]")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    mark_page(page)

    # The incident opens while on-call watches the list: it appears without a reload.
    incident = off_loop(open_incident, mission)
    row = page.get_by_role("row").filter(has_text="Truck LSA-301 reports a thermal warning")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text("Triggered")
    assert_not_reloaded(page)
    screenshot(page, "oncall-0-list-live")

    row.get_by_role("link", name=f"INC-{incident.pk}").click()
    expect(page).to_have_url(f"{live_url}/incidents/{incident.pk}/")
    status = page.locator(f'[data-live-status="incident:{incident.pk}"]')
    expect(status).to_have_text("Triggered")
    expect(page.get_by_role("link", name=f"Mission #{mission.pk}")).to_be_visible()
    expect(page.get_by_role("button", name="Resolve")).to_be_visible()
    screenshot(page, "oncall-1-triggered")

    page.get_by_label("Note (optional)").fill("Looking at it; carrier desk called.")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_text(f"INC-{incident.pk} acknowledged.")).to_be_visible()
    expect(status).to_have_text("Acknowledged")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ACKNOWLEDGED
    assert incident.assignee_id == oncall.pk and incident.acknowledged_at is not None
    # The timeline shows who did it and the note.
    timeline = page.locator("[data-live-timeline]")
    expect(timeline).to_contain_text("Looking at it; carrier desk called.", timeout=LIVE_TIMEOUT_MS)
    expect(timeline).to_contain_text("oncall")

    # The runbook waits on its first checklist item; the second comes after it.
    runbook_card = page.locator("section", has=page.get_by_role("heading", name=f"Runbook: {runbook.name}"))
    expect(runbook_card).to_be_visible()
    step_1 = runbook_card.get_by_role("listitem").filter(has_text=f"1. {STEP_1}")
    step_2 = runbook_card.get_by_role("listitem").filter(has_text=f"2. {STEP_2}")
    expect(step_1).to_contain_text("Waiting")
    expect(step_1).to_contain_text("Ask whether the truck should pull over")
    expect(runbook_card.get_by_role("button", name="Confirm step 2")).to_have_count(0)
    screenshot(page, "oncall-2-acknowledged-runbook")

    step_1.get_by_label("Note for step 1").fill("Desk will pull over at the next rest area if it persists.")
    step_1.get_by_role("button", name="Confirm step 1").click()
    expect(page.get_by_text("Step 1 confirmed.")).to_be_visible()
    expect(step_1).to_contain_text("Done")
    expect(step_1).to_contain_text("oncall")
    expect(runbook_card.get_by_role("button", name="Confirm step 1")).to_have_count(0)
    # The run moved on to the next item, which on-call can now confirm.
    expect(step_2.get_by_role("button", name="Confirm step 2")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    confirmed = StepRun.objects.get(run__incident=incident, step__position=1)
    assert confirmed.status == StepStatus.DONE
    assert confirmed.reason == "Desk will pull over at the next rest area if it persists."
    expect(timeline).to_contain_text("Desk will pull over at the next rest area if it persists.")

    page.get_by_label("Note (optional)").fill("Carrier cleared the warning remotely.")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_text(f"INC-{incident.pk} resolved.")).to_be_visible()
    expect(status).to_have_text("Resolved")
    expect(page.get_by_role("button", name="Resolve")).to_have_count(0)
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.RESOLVED and incident.resolved_at is not None
    assert incident.time_to_recovery_seconds is not None and incident.time_to_recovery_seconds >= 0
    expect(timeline).to_contain_text("Carrier cleared the warning remotely.")
    screenshot(page, "oncall-3-resolved")

    network.assert_loopback_only()
    assert network.page_errors == []
