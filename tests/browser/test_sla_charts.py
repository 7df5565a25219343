"""The SLA pages in the browser: the landing page shows every carrier against its targets, a carrier without
traffic reads "no traffic" (never a red 0 %), the plotly charts carry axis titles and target lines, no console
error, and nothing is fetched from outside the machine."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from missions.choices import CarrierKind
from missions.models import Carrier, Mission
from sla.services import sla_evaluate
from tests.browser.pages import delivered
from tests.browser.support import NetworkLog, login, off_loop, screenshot
from tests.factories import CarrierFactory, ContractFactory
from tests.sla.fixtures import samples

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHART_TIMEOUT_MS = 15_000


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

    login(page, live_url, sla_manager, next_path="/sla/dashboard/")  # the old address of the overview
    # The old overview address lands on the SLA landing page.
    expect(page).to_have_url(f"{live_url}/sla/")
    expect(page.get_by_role("heading", name="SLA", exact=True)).to_be_visible()

    # Carriers compared: grouped bars (plotly draws SVG), and the same figures in the table.
    comparison = page.locator("#sla-comparison")
    expect(comparison).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(comparison.locator("svg.main-svg").first).to_be_visible()
    expect(comparison.locator(".barlayer .point").first).to_be_attached()
    assert comparison.locator(".barlayer .point").count() >= 4  # two carriers, at least two percentage SLIs
    expect(comparison.locator(".xtick text")).to_have_text(["Gulf Coast Driverless", "Lone Star Autonomous"])
    table = page.locator("table.sla-landing")
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


# --- The landing page: every carrier against its targets, no traffic never drawn as failure ----------------

DANGER_RGB = "rgb(180, 35, 24)"  # --danger in console.css: the colour of a missed target


def with_telemetry(carrier: Carrier, *, completed_at: datetime, late: bool) -> None:
    """A delivered mission whose truck reported every 30 s of its six hours (every telemetry interval covered)."""
    delivered(carrier, completed_at=completed_at, late=late)
    m = Mission.objects.filter(carrier=carrier).latest("id")
    assert m.started_at is not None
    assert m.completed_at is not None
    # The last sample just before the end: a mission that ends a fraction of a second into a minute has
    # that minute to cover too.
    last = m.completed_at - timedelta(microseconds=1)
    samples(m, [m.started_at + timedelta(seconds=30 * k) for k in range(720)] + [last])


def landing_fleet(now: datetime) -> dict[str, Carrier]:
    """Six carriers, one of each state the landing page knows, evaluated as beat would."""
    steady = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    shaky = CarrierFactory(name="Gulf Coast Driverless", slug="gulf-coast")
    idle = CarrierFactory(name="Red River Freight Lines", slug="red-river", kind=CarrierKind.HUMAN_DRIVEN)
    loose = CarrierFactory(name="Mesa Haulers", slug="mesa", kind=CarrierKind.HUMAN_DRIVEN)
    fresh = CarrierFactory(name="Frontier Autonomous", slug="frontier")
    few = CarrierFactory(name="Pecos Valley Haulers", slug="pecos", kind=CarrierKind.HUMAN_DRIVEN)
    for carrier in (steady, shaky, idle, fresh, few):
        ContractFactory(carrier=carrier)
    for n in range(12):
        done = now - timedelta(hours=1 + n * 4)
        with_telemetry(steady, completed_at=done, late=n == 5)
        # One late in three over three days burns the on-time budget at 6.7x: a ticket-level alert.
        with_telemetry(shaky, completed_at=done - timedelta(minutes=30), late=n % 3 == 0)
    with_telemetry(loose, completed_at=now - timedelta(hours=2), late=False)
    # One short mission, late and silent: 0 % on time over one mission, too few events to judge.
    # Inside one telemetry interval (a minute), whatever the second the test runs at: one interval.
    minute = (now - timedelta(minutes=40)).replace(second=0, microsecond=0)
    delivered(few, completed_at=minute + timedelta(seconds=30), late=True)
    Mission.objects.filter(carrier=few).update(started_at=minute + timedelta(seconds=10))
    for hours_ago in (9, 6, 3, 0):
        for carrier in (steady, shaky, idle, loose, few):
            sla_evaluate(carrier_id=carrier.pk, now=now - timedelta(hours=hours_ago))
    return {"steady": steady, "shaky": shaky, "idle": idle, "loose": loose, "fresh": fresh, "few": few}


def test_sla_landing_shows_carriers_against_targets_and_no_traffic_as_no_traffic(
    page: Page, live_url: str, readonly: User, network: NetworkLog
) -> None:
    now = timezone.now()
    fleet = off_loop(landing_fleet, now)
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

    login(page, live_url, readonly, next_path="/sla/?window=7d")
    expect(page).to_have_url(f"{live_url}/sla/?window=7d")
    expect(page.get_by_role("link", name="7 d")).to_have_attribute("aria-current", "true")
    table = page.locator("table.sla-landing")

    # SLIs against their targets, per carrier, with the budget and the burn state at a glance.
    steady = table.locator('tr[data-carrier="lone-star"]')
    expect(steady.locator('td[data-sli="on_time"]')).to_contain_text("91.67 %")
    expect(steady.locator('td[data-sli="on_time"]')).to_contain_text("target 95.00 %")
    expect(steady.locator('td[data-sli="on_time"]')).to_have_attribute("data-state", "missed")
    expect(steady.locator('td[data-sli="telemetry_integrity"]')).to_contain_text("100.00 %")
    expect(steady.locator('td[data-sli="telemetry_integrity"]')).to_have_attribute("data-state", "met")
    shaky = table.locator('tr[data-carrier="gulf-coast"]')
    expect(shaky).to_have_attribute("data-burn-state", "ticket")
    expect(shaky.locator(".sla-burn")).to_contain_text("Burning · ticket")
    expect(shaky.locator(".sla-burn")).to_contain_text(re.compile(r"On-time delivery rate: \d+\.\dx"))
    expect(page.locator("#sla-burning")).to_be_visible()
    expect(shaky.locator(".sla-burn")).to_contain_text("Budget overspent")

    # The human-driven carrier without traffic: "no traffic" in every SLI, neutral, never a red 0 %.
    idle = table.locator('tr[data-carrier="red-river"]')
    expect(idle).to_have_attribute("data-burn-state", "no_traffic")
    expect(idle.locator(".sla-burn .badge")).to_have_text("No traffic")
    expect(idle.locator('td[data-state="no_traffic"]')).to_have_count(7)
    expect(idle.locator(".sla-nodata")).to_have_text(["no traffic"] * 7)
    expect(idle).not_to_contain_text("0.00 %")
    colours = idle.locator("td.sla-cell .sla-nodata").evaluate_all("els => els.map(e => getComputedStyle(e).color)")
    assert DANGER_RGB not in colours, colours
    # One late mission of one: 0 % shown as measured, but too few events to judge, so not red either.
    few = table.locator('tr[data-carrier="pecos"]')
    expect(few).to_have_attribute("data-burn-state", "low_traffic")
    expect(few.locator('td[data-sli="on_time"]')).to_have_attribute("data-state", "low_traffic")
    expect(few.locator('td[data-sli="on_time"]')).to_contain_text("0.00 %")
    expect(few.locator('td[data-sli="on_time"]')).to_contain_text("1 mission: too few to judge")
    colour = few.locator('td[data-sli="on_time"] .sla-value').evaluate("e => getComputedStyle(e).color")
    assert colour != DANGER_RGB, colour
    # Measured without a contract, and never evaluated: said so, not judged.
    loose = table.locator('tr[data-carrier="mesa"]')
    expect(loose).to_have_attribute("data-burn-state", "no_contract")
    expect(loose.locator('td[data-sli="on_time"]')).to_have_attribute("data-state", "no_target")
    fresh = table.locator('tr[data-carrier="frontier"]')
    expect(fresh).to_have_attribute("data-burn-state", "not_evaluated")
    expect(fresh.locator(".sla-nodata")).to_have_text(["not evaluated"] * 7)

    # The comparison chart: axis titles, a target dash per bar with a target, gaps labelled, never bars at 0.
    comparison = page.locator("#sla-comparison")
    expect(comparison).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(comparison.locator(".xtitle")).to_have_text("carrier")
    expect(comparison.locator(".ytitle")).to_have_text("share of good events (%)")
    expect(comparison.locator(".legendtext")).to_contain_text(["On-time delivery", "target"])
    # Target dashes: three percentage SLIs for each carrier measured under a contract (not Mesa, not Frontier).
    assert comparison.locator(".shapelayer path").count() == 12
    labels = comparison.locator(".annotation-text").all_text_contents()
    assert labels.count("no traffic") == 3 and labels.count("not evaluated") == 3, labels
    assert labels.count("too few (1)") == 3, labels  # one mission, one telemetry interval
    bars = page.evaluate(
        "() => document.getElementById('sla-comparison').data.filter(t => t.type === 'bar')"
        ".map(t => t.y.map(v => v === null ? null : Number(v)))"
    )
    carriers = page.evaluate("() => document.getElementById('sla-comparison').layout.xaxis.ticktext")
    for name in ("Red River Freight Lines", "Frontier Autonomous"):
        assert all(trace[carriers.index(name)] is None for trace in bars), (name, bars)
    screenshot(page, "sla-landing")

    # The idle carrier's dashboard: no traffic in the table, the charts' note, no burn-down.
    idle.get_by_role("link", name="Red River Freight Lines").click()
    expect(page.get_by_role("heading", name=re.compile("Red River Freight Lines"))).to_be_visible()
    expect(page.locator('table.sla-latest tr[data-state="no_traffic"]')).to_have_count(7)
    expect(page.locator("table.sla-latest")).not_to_contain_text("0.00 %")
    expect(page.locator("#sla-series")).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(page.locator("#sla-series-empty")).to_contain_text("No traffic in this window")
    expect(page.locator("#sla-burndown")).to_contain_text("No error budget to draw this month")

    # A busy carrier's charts: axis titles with units, the target line beside the measured one.
    page.goto(f"{live_url}/sla/dashboard/carriers/{fleet['steady'].pk}/?window=24h")
    expect(page.locator("#sla-series")).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    on_time = page.locator("#sla-series-on_time")
    expect(on_time.locator(".xtitle")).to_have_text("evaluated at (UTC)")
    expect(on_time.locator(".ytitle")).to_have_text("percent (%)")
    expect(on_time.locator(".legendtext")).to_have_text(["measured", "target"])
    burndown = page.locator("#sla-burndown")
    expect(burndown.locator(".ytitle")).to_have_text("error budget left (%)")
    screenshot(page, "sla-landing-carrier")

    # Gaps: Mesa's one mission finished 2 h ago, so three of its four 24 h evaluations had no traffic. The
    # line has a gap there, labelled "no traffic" on a shaded band, and no point at 0; no contract, no target.
    page.goto(f"{live_url}/sla/dashboard/carriers/{fleet['loose'].pk}/?window=24h")
    mesa = page.locator("#sla-series-on_time")
    expect(mesa.locator(".legendtext")).to_have_text(["measured"], timeout=CHART_TIMEOUT_MS)
    plotted = page.evaluate("() => document.getElementById('sla-series-on_time').data[0].y")
    assert plotted == [None, None, None, 100.0], plotted
    expect(mesa.locator(".shapelayer path")).to_have_count(1)
    expect(mesa.locator(".shapelayer text")).to_have_text("no traffic")
    screenshot(page, "sla-landing-gaps", part=mesa)

    network.assert_loopback_only()
    assert network.page_errors == []
    assert console_errors == []


def test_the_comparison_reads_with_a_single_carrier(
    page: Page, live_url: str, readonly: User, network: NetworkLog
) -> None:
    """One carrier: one tick, three bars of sensible width beside their target dashes (not one bar across)."""
    now = timezone.now()
    only = CarrierFactory(name="Lone Star Autonomous", slug="lone-star")
    ContractFactory(carrier=only)
    for n in range(12):
        delivered(only, completed_at=now - timedelta(hours=1 + n), late=n == 3)
    off_loop(evaluate_history, [only], now)

    login(page, live_url, readonly, next_path="/sla/?window=24h")
    comparison = page.locator("#sla-comparison")
    expect(comparison).to_have_attribute("data-drawn", "1", timeout=CHART_TIMEOUT_MS)
    expect(comparison.locator(".xtick text")).to_have_text(["Lone Star Autonomous"])
    expect(comparison.locator(".barlayer .point")).to_have_count(3)
    plot_width = comparison.locator(".nsewdrag").first.bounding_box()
    bars = [comparison.locator(".barlayer .point path").nth(k).bounding_box() for k in range(3)]
    assert plot_width is not None and all(b is not None for b in bars)
    # The axis keeps room for three carriers: each bar is about 8 % of the plot, not a quarter of it.
    assert all(b is not None and 0 < b["width"] < plot_width["width"] / 6 for b in bars), (bars, plot_width)
    assert comparison.locator(".shapelayer path").count() == 3  # a target dash per bar
    expect(comparison.locator(".annotation-text")).to_have_count(0)  # nothing missing, nothing labelled
    assert network.page_errors == []
