"""A dispatcher reads a mission's trace: the waterfall on the mission page and the full trace page.

Drawn offline under the Content-Security-Policy: the bars are SVG shapes placed
by their attributes, no inline style, no script; the page makes no request
beyond the console (the ``page`` fixture fails the test on any request leaving
loopback, CSP violation or console error).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions.choices import MissionStatus
from missions.models import Mission
from tests.browser.support import NetworkLog, login, screenshot
from tests.factories import CarrierFactory, MissionFactory, VehicleFactory
from tests.tracing import store_linked_span, store_tender_trace

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_mission_trace_waterfall_renders_offline_and_opens_the_full_trace(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    carrier = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    mission = MissionFactory(
        carrier=carrier, status=MissionStatus.EN_ROUTE, vehicle=VehicleFactory(carrier=carrier, external_id="LSA-501")
    )
    stored = store_tender_trace(mission_id=mission.pk, shipment_id=mission.shipment_id)
    Mission.objects.filter(pk=mission.pk).update(traceparent=stored.traceparent)
    store_linked_span(to=stored, name="telemetry batch lone-star")

    login(page, live_url, dispatcher, next_path=f"/missions/{mission.pk}/")
    card = page.locator("#mission-trace")
    expect(card).to_be_visible()
    rows = card.locator(".wf-row")
    shown = [name for name in stored.tree_order if name != "SELECT"]  # database calls are folded on the card
    expect(rows).to_have_count(len(shown))
    expect(card.locator(".wf-name-text")).to_have_text(shown)
    expect(card).to_contain_text("1 more span (database calls)")

    # Every bar is drawn: a rect with a real size on screen, placed along the track by its start.
    boxes = [rows.nth(i).locator("rect.wf-bar").bounding_box() for i in range(len(shown))]
    assert all(box is not None and box["width"] > 0 and box["height"] > 0 for box in boxes), boxes
    lefts = [box["x"] for box in boxes if box is not None]
    assert lefts[0] < lefts[4] < lefts[5]  # the request, then the carrier's server, then its callback
    # Deeper rows are indented further.
    indents = [rows.nth(i).locator(".wf-name").bounding_box() for i in (0, 1, 5)]
    texts = [rows.nth(i).locator(".wf-name-text").bounding_box() for i in (0, 1, 5)]
    assert all(t is not None for t in texts) and all(i is not None for i in indents)
    assert texts[0]["x"] < texts[1]["x"] < texts[2]["x"]  # type: ignore[index]
    # The failed call is marked, with its status.
    failed = rows.filter(has=page.locator(".wf-error-mark"))
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("HTTP 503 from the carrier")
    screenshot(page, "trace-waterfall-mission", part=card)

    # A span's attributes open on demand.
    callback = rows.filter(has_text="POST /api/v1/tenders/<pk>/offers/")
    attributes = callback.locator(".wf-attributes")
    expect(attributes).to_be_hidden()
    callback.locator("summary").click()
    expect(attributes).to_be_visible()
    expect(attributes).to_contain_text("tms.mission_id")
    expect(attributes).to_contain_text("http.status_code")

    # The full trace page: every span (the query too), the summary and the batch linking to the trace.
    card.get_by_role("link", name="the full trace").click()
    expect(page).to_have_url(f"{live_url}/traces/{stored.trace_id}/")
    expect(page.locator("#trace-waterfall .wf-row")).to_have_count(len(stored.tree_order))
    expect(page.locator("#trace-waterfall .wf-name-text")).to_have_text(stored.tree_order)
    expect(page.locator("#trace-summary")).to_contain_text("carrier-sim")
    expect(page.locator("#trace-summary").get_by_role("link", name=f"Mission #{mission.pk}")).to_be_visible()
    expect(page.locator("#trace-linked")).to_contain_text("telemetry batch lone-star")
    screenshot(page, "trace-waterfall-page")

    network.assert_loopback_only()
    assert not network.problems(), network.problems()
    assert not network.broken(), network.broken()
    styled = page.evaluate(
        "[...document.querySelectorAll('.waterfall [style], .waterfall[style]')].map(e => e.outerHTML.slice(0, 200))"
    )
    assert styled == [], styled
