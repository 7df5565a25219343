"""Feature flags in the browser: switching a carrier's flag changes which carriers the tender form offers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions import flags, services
from missions.events import Actor
from missions.models import CarrierFlag
from tests.browser.support import NetworkLog, login, off_loop, screenshot
from tests.factories import CarrierFactory, ShipmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_switching_night_operations_on_offers_the_carrier_a_night_load(
    page: Page, live_url: str, admin_user: User, network: NetworkLog
) -> None:
    night_owl = CarrierFactory(name="Night Owl Autonomous", slug="night-owl")
    day_lark = CarrierFactory(name="Day Lark Autonomous", slug="day-lark")
    shipment = ShipmentFactory(needs_night_operations=True)
    off_loop(
        services.carrier_flag_set,
        carrier_id=night_owl.pk,
        key=flags.NIGHT_OPERATIONS,
        enabled=True,
        actor=Actor.system("test"),
        reason="night pilot",
        confirmed=True,
    )
    login(page, live_url, admin_user, next_path=f"/shipments/{shipment.pk}/")
    offered = page.locator('select[name="carrier"] option')
    expect(offered).to_have_text(["Choose a carrier", "Night Owl Autonomous"])
    expect(page.get_by_text("night operations flag off")).to_be_visible()  # why Day Lark is not offered

    page.goto(f"{live_url}/carriers/flags/")
    row = page.locator(f'#carrier-{day_lark.pk} tr[data-flag="night_operations"]')
    expect(row).to_have_attribute("data-enabled", "off")
    row.get_by_label("Reason").fill("night pilot extended")
    # A risky capability is switched on only with the confirmation ticked; the page comes back with the error, a 400.
    network.expect_status(f"{live_url}/carriers/{day_lark.pk}/flags/", 400)
    row.get_by_role("button", name="Switch on night operations").click()
    row = page.locator(f'#carrier-{day_lark.pk} tr[data-flag="night_operations"]')
    expect(row).to_contain_text("Tick the confirmation to switch night operations on.")
    assert not off_loop(lambda: CarrierFlag.objects.filter(carrier=day_lark, enabled=True).exists())
    row.get_by_label("Reason").fill("night pilot extended")
    row.get_by_role("checkbox").check()
    screenshot(page, "carrier-flags-confirm", part=page.locator(f"#carrier-{day_lark.pk}"))
    row.get_by_role("button", name="Switch on night operations").click()
    expect(page.get_by_text("Night operations is on for Day Lark Autonomous.")).to_be_visible()
    expect(page.locator(f'#carrier-{day_lark.pk} tr[data-flag="night_operations"]')).to_have_attribute(
        "data-enabled", "on"
    )

    page.goto(f"{live_url}/shipments/{shipment.pk}/")
    expect(offered).to_have_text(["Choose a carrier", "Day Lark Autonomous", "Night Owl Autonomous"])
    screenshot(page, "carrier-flags-tender-form")
    network.assert_loopback_only()
