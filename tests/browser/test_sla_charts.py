"""The SLA dashboards draw their plotly charts in the browser with nothing fetched from outside the machine."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from missions.choices import MissionStatus
from missions.models import Carrier
from sla.services import sla_evaluate
from tests.browser.support import NetworkLog, login, off_loop, screenshot
from tests.factories import CarrierFactory, ContractFactory, MissionFactory, ShipmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHART_TIMEOUT_MS = 15_000


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


def evaluate_history(carriers: list[Carrier], now: datetime) -> None:
    """Evaluations as beat runs them, a few hours apart, so the charts have a series to draw."""
    for hours_ago in (9, 6, 3, 0):
        for carrier in carriers:
            sla_evaluate(carrier_id=carrier.pk, now=now - timedelta(hours=hours_ago))


def test_sla_dashboards_render_their_charts_offline(
    page: Page, live_url: str, sla_manager: User, network: NetworkLog
) -> None:
    now = timezone.now()
    steady = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    shaky = CarrierFactory(name="Gulf Coast Driverless", slug="gulf-coast")
    for carrier, late_every in ((steady, 10), (shaky, 3)):
        ContractFactory(carrier=carrier)
        for n in range(9):
            delivered(carrier, completed_at=now - timedelta(days=2, hours=n * 3), late=n % late_every == late_every - 1)
    off_loop(evaluate_history, [steady, shaky], now)

    login(page, live_url, sla_manager, next_path="/sla/dashboard/")
    expect(page).to_have_url(f"{live_url}/sla/dashboard/")
    expect(page.get_by_role("heading", name="SLA dashboard")).to_be_visible()

    # Carriers compared: grouped bars (plotly draws SVG), and the same figures in the table.
    comparison = page.locator("#sla-comparison")
    expect(comparison).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(comparison.locator("svg.main-svg").first).to_be_visible()
    expect(comparison.locator(".barlayer .point").first).to_be_attached()
    assert comparison.locator(".barlayer .point").count() >= 4  # two carriers, at least two percentage SLIs
    expect(comparison.locator(".xtick text")).to_have_text(["Gulf Coast Driverless", "Lone Star Autonomous"])
    table = page.get_by_role("table")
    expect(table.get_by_role("row").filter(has_text="Lone Star Autonomous")).to_contain_text("target")
    expect(comparison).not_to_contain_text("Chart unavailable")
    screenshot(page, "sla-1-overview")

    # One carrier: SLI against target over time, and the month's error-budget burn-down.
    table.get_by_role("link", name="Lone Star Autonomous").click()
    expect(page.get_by_role("heading", name="Lone Star Autonomous")).to_be_visible()
    series = page.locator("#sla-series")
    expect(series).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    on_time = page.locator("#sla-series-on_time")
    expect(on_time.locator("svg.main-svg").first).to_be_visible()
    expect(on_time.locator(".gtitle")).to_contain_text("On-time delivery rate")
    # Measured and target lines, each with the four evaluations.
    expect(on_time.locator(".scatterlayer .trace")).to_have_count(2)
    assert on_time.locator(".scatterlayer .trace").first.locator(".point").count() == 4
    burndown = page.locator("#sla-burndown")
    expect(burndown.locator("svg.main-svg").first).to_be_visible()
    expect(burndown.locator(".scatterlayer .trace").first).to_be_attached()
    expect(series).not_to_contain_text("Charts unavailable")
    screenshot(page, "sla-2-carrier")
    screenshot(page, "sla-3-carrier-charts", part=page.locator("section", has=series))
    screenshot(page, "sla-4-carrier-burndown", part=page.locator("section", has=burndown))

    # Nothing but this machine was asked for anything, plotly.js included.
    network.assert_loopback_only()
    assert any(u.endswith("/static/vendor/plotly/plotly.min.js") for u in network.requests), network.requests
    assert any("/sla/dashboard/comparison.json" in u for u in network.requests)
    assert any(f"/sla/dashboard/carriers/{steady.pk}/series.json" in u for u in network.requests)
    assert network.page_errors == []
