"""Every page of the console, for the browser test that opens each one as each role.

A page is a path (filled from ``ConsoleData``), the permission it needs and,
for pages whose scripts do work after loading (charts, the live map, live
updates), a check that they did it. A role lacking the permission gets the
console's 403 page, which must load whole too; admin pages are opened by staff
only. Adding a page to the console: add it to ``CONSOLE_PAGES`` (and what it
needs to ``console_data``); the sweep in ``test_console_pages.py`` picks it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission
from missions.partner.services import partner_client_create
from missions.telemetry.dead_letters import dead_letter_record
from missions.telemetry.ingest import ingest_events
from runbooks.choices import IncidentKind, IncidentSeverity
from runbooks.services import incident_open
from sla.models import Breach
from sla.services import sla_evaluate
from tests.browser.fleet import telemetry
from tests.browser.support import LIVE_TIMEOUT_MS
from tests.factories import (
    CarrierFactory,
    ContractFactory,
    MissionFactory,
    ShipmentFactory,
    TenderFactory,
    VehicleFactory,
)
from tests.tracing import store_linked_span, store_tender_trace
from tms_console.roles import DISPATCH_LOADS, MANAGE_CARRIERS, MANAGE_PLATFORM, VIEW_CONSOLE, perm

STAFF = "staff"  # the Django admin: staff users, whatever their console permissions
SIGNED_IN = "signed-in"  # any verified user (their own security settings)
CHART_TIMEOUT_MS = 15_000

Ready = Callable[[Page], None]


@dataclass(frozen=True)
class ConsoleData:
    """Ids of one object of each kind, for the paths of the detail pages."""

    carrier: int
    contract: int
    shipment: int
    mission: int
    incident: int
    breach: int
    dead_letter: int
    trace: str


@dataclass(frozen=True)
class ConsolePage:
    """A console page: where it is, what it needs, and how to tell its scripts have done their work."""

    path: str
    needs: str = VIEW_CONSOLE
    ready: Ready | None = None

    def url(self, base_url: str, data: ConsoleData) -> str:
        return base_url + self.path.format(**vars(data))

    def status_for(self, user: User) -> int | None:
        """The status ``user`` gets here (403 without the permission); None: a page not offered to them."""
        if self.needs == STAFF:
            return 200 if user.is_staff else None
        if self.needs == SIGNED_IN or user.has_perm(perm(self.needs)):
            return 200
        return 403


# --- What the pages' scripts do once loaded ----------------------------------------------------


def live_updates(page: Page) -> None:
    """live.js holds its WebSocket (or its polling fallback) open."""
    expect(page.locator("[data-live-indicator]")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)


def live_map(page: Page) -> None:
    """The map is live, plotly drew it, with the states from the local topojson and a truck on it."""
    expect(page.locator("#livemap-status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#livemap svg.main-svg").first).to_be_attached()
    page.wait_for_function("() => document.querySelectorAll('#livemap .geo path').length > 0", timeout=CHART_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const el = document.getElementById('livemap');"
        " return !!el && !!el.data && el.data.length > 0 && (el.data[0].lat || []).length > 0; }",
        timeout=LIVE_TIMEOUT_MS,
    )
    expect(page.locator("#livemap-rows tr").first).to_be_visible()


def mission_page(page: Page) -> None:
    """Live updates, and the track, speed and connectivity charts drawn from the mission's telemetry."""
    live_updates(page)
    expect(page.locator("#mission-speed svg.main-svg").first).to_be_attached(timeout=CHART_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.querySelectorAll('#mission-track .geo path').length > 0", timeout=CHART_TIMEOUT_MS
    )
    page.wait_for_function(
        "() => { const el = document.getElementById('mission-speed');"
        " return !!el && !!el.data && (el.data[0].x || []).length > 0; }",
        timeout=CHART_TIMEOUT_MS,
    )


def trace_waterfall(page: Page) -> None:
    """The stored trace is drawn: rows with their SVG bars."""
    expect(page.locator("#trace-waterfall .wf-row").first).to_be_visible()
    expect(page.locator("#trace-waterfall rect.wf-bar").first).to_be_attached()


def sla_overview(page: Page) -> None:
    comparison = page.locator("#sla-comparison")
    expect(comparison).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(comparison.locator(".barlayer .point").first).to_be_attached()


def sla_carrier(page: Page) -> None:
    expect(page.locator("#sla-series")).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(page.locator("#sla-burndown svg.main-svg").first).to_be_visible()


def plotly_styles_applied(page: Page) -> None:
    """Plotly's own style rules reached the page (its CSSOM-filled <style>): the mode bar is laid out by them."""
    page.wait_for_function(
        "() => [...document.styleSheets].some(s => s.ownerNode && s.ownerNode.id === 'plotly.js-style-global'"
        " && s.cssRules.length > 0)",
        timeout=CHART_TIMEOUT_MS,
    )


def swagger_ui(page: Page) -> None:
    """Swagger UI started (its start-up script ran under the nonce) and read the schema."""
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "TMS Console partner API", timeout=CHART_TIMEOUT_MS
    )


def both(*checks: Ready) -> Ready:
    def run(page: Page) -> None:
        for check in checks:
            check(page)

    return run


# --- The pages ---------------------------------------------------------------------------------

# Pages anyone may open, signed in or not.
PUBLIC_PAGES: list[ConsolePage] = [
    ConsolePage("/account/login/", needs=SIGNED_IN),
    ConsolePage("/api/v1/docs/", needs=SIGNED_IN, ready=swagger_ui),
]

CONSOLE_PAGES: list[ConsolePage] = [
    ConsolePage("/"),
    ConsolePage("/shipments/"),
    ConsolePage("/shipments/new/", needs=DISPATCH_LOADS),
    ConsolePage("/shipments/{shipment}/", ready=live_updates),
    ConsolePage("/missions/"),
    ConsolePage("/missions/{mission}/", ready=both(mission_page, plotly_styles_applied)),
    ConsolePage("/missions/{mission}/evidence/"),
    ConsolePage("/map/", ready=both(live_map, plotly_styles_applied)),
    ConsolePage("/carriers/"),
    ConsolePage("/carriers/{carrier}/"),
    ConsolePage("/telemetry/dead-letters/"),
    ConsolePage("/telemetry/dead-letters/{dead_letter}/"),
    ConsolePage("/incidents/", ready=live_updates),
    ConsolePage("/incidents/{incident}/", ready=live_updates),
    ConsolePage("/traces/{trace}/", ready=trace_waterfall),
    ConsolePage("/sla/", ready=both(sla_overview, plotly_styles_applied)),
    ConsolePage("/sla/contracts/"),
    ConsolePage("/sla/dashboard/"),  # the old overview address: redirects to /sla/
    ConsolePage("/sla/dashboard/carriers/{carrier}/", ready=sla_carrier),
    ConsolePage("/sla/dashboard/breaches/"),
    ConsolePage("/sla/dashboard/breaches/{breach}/"),
    ConsolePage("/sla/dashboard/credits/"),
    ConsolePage("/partners/", needs=MANAGE_PLATFORM),
    ConsolePage("/carriers/onboarding/", needs=MANAGE_CARRIERS),
    ConsolePage("/carriers/marketplace/"),
    ConsolePage("/account/two_factor/", needs=SIGNED_IN),
    ConsolePage("/account/two_factor/backup/tokens/", needs=SIGNED_IN),
    ConsolePage("/admin/", needs=STAFF),
    ConsolePage("/admin/missions/carrier/", needs=STAFF),
    ConsolePage("/admin/missions/carrier/{carrier}/change/", needs=STAFF),
    ConsolePage("/admin/missions/mission/", needs=STAFF),
    ConsolePage("/admin/missions/auditevent/", needs=STAFF),
    ConsolePage("/admin/runbooks/incident/{incident}/change/", needs=STAFF),
    ConsolePage("/admin/sla/contract/{contract}/change/", needs=STAFF),
    ConsolePage("/admin/auth/user/", needs=STAFF),
    *PUBLIC_PAGES,
]

NOT_FOUND_PATH = "/no-such-console-page/"


# --- One of everything ---------------------------------------------------------------------------


def delivered(carrier: Carrier, *, completed_at: datetime, late: bool) -> None:
    """A completed mission; ``late`` ones arrive an hour after the delivery window closed."""
    window_end = completed_at - timedelta(hours=1) if late else completed_at + timedelta(hours=1)
    shipment = ShipmentFactory(
        pickup_window_start=window_end - timedelta(hours=10),
        pickup_window_end=window_end - timedelta(hours=9),
        delivery_window_start=window_end - timedelta(hours=2),
        delivery_window_end=window_end,
    )
    MissionFactory(
        shipment=shipment,
        carrier=carrier,
        status=MissionStatus.COMPLETED,
        started_at=completed_at - timedelta(hours=6),
        completed_at=completed_at,
    )


def console_data(admin: User) -> ConsoleData:
    """A carrier with a contract, measured history and a breach; a live mission with telemetry; a tender,
    an incident, a dead letter and a partner client. Run it off the test's event loop (``off_loop``)."""
    now = timezone.now()
    carrier = CarrierFactory(name="Lone Star Autonomous", slug="lone-star", operating_regions=["TX"])
    contract = ContractFactory(carrier=carrier)
    for n in range(6):
        delivered(carrier, completed_at=now - timedelta(days=2, hours=n * 3), late=n % 3 == 2)
    for hours_ago in (6, 3, 0):
        sla_evaluate(carrier_id=carrier.pk, now=now - timedelta(hours=hours_ago))
    today = now.date()
    breach = Breach.objects.create(
        carrier=carrier,
        contract=contract,
        sli="on_time",
        period_start=today.replace(day=1),
        period_end=today.replace(day=1) + timedelta(days=31),
        measured=Decimal("91.5"),
        target=Decimal("95"),
        unit="%",
        attainment_pct=Decimal("91.5"),
        evidence={"missions": []},
    )

    mission: Mission = MissionFactory(
        carrier=carrier,
        status=MissionStatus.EN_ROUTE,
        vehicle=VehicleFactory(carrier=carrier, external_id="LSA-401"),
    )
    events = [
        telemetry(mission, at=now - timedelta(seconds=3 - i), lat=32.30 - 0.01 * i, lon=-96.62, speed_kph=95.0)
        for i in range(3)
    ]
    result = ingest_events(carrier=carrier, events=events, source="http")
    assert result.accepted == len(events), result.as_dict()
    # The mission's trace in the span store: its waterfall on the mission page and the trace page.
    trace = store_tender_trace(mission_id=mission.pk, shipment_id=mission.shipment_id)
    Mission.objects.filter(pk=mission.pk).update(traceparent=trace.traceparent)
    mission.refresh_from_db()
    store_linked_span(to=trace)

    tender = TenderFactory(carrier=carrier)
    incident, _ = incident_open(
        actor=Actor.system("detector"),
        kind=IncidentKind.LOST_COMMS,
        title="Truck LSA-401 lost comms",
        severity=IncidentSeverity.ERROR,
        mission=mission,
        summary="No telemetry for 90 s.",
    )
    letter = dead_letter_record(
        source="mqtt", topic="tms/lone-star/telemetry", payload=b"{not json", kind="unreadable", reason="not JSON"
    )
    partner_client_create(
        carrier_id=carrier.pk, name="Lone Star dispatch API", scopes=["tender:read"], actor=Actor.for_user(admin)
    )
    return ConsoleData(
        carrier=carrier.pk,
        contract=contract.pk,
        shipment=tender.shipment_id,
        mission=mission.pk,
        incident=incident.pk,
        breach=breach.pk,
        dead_letter=letter.pk,
        trace=trace.trace_id,
    )
