"""The playbook's example lane in the browser: the dispatcher sees who can take Chicago -> Los Angeles before saving."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from missions.choices import CarrierKind
from missions.models import Shipment
from tests.browser.support import NetworkLog, login, screenshot
from tests.factories import CarrierFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_eligible_carriers_show_while_the_dispatcher_types(
    page: Page, live_url: str, dispatcher: User, network: NetworkLog
) -> None:
    CarrierFactory(name="Texas Only Autonomous", slug="texas-only", operating_regions=["TX"])
    CarrierFactory(
        name="Transcon Autonomous Lines", slug="transcon", operating_regions=["IL", "MO", "OK", "TX", "NM", "AZ", "CA"]
    )
    CarrierFactory(
        name="Any Road Trucking",
        slug="any-road",
        kind=CarrierKind.HUMAN_DRIVEN,
        max_autonomy_level=0,
        operating_regions=[],
        max_weight_kg=20000,
    )
    login(page, live_url, dispatcher, next_path="/shipments/new/")
    panel = page.locator("#eligibility")
    expect(panel).to_contain_text("Enter the origin and destination states")

    page.get_by_label("Origin state").fill("IL")
    page.get_by_label("Destination state").fill("CA")
    page.get_by_label("Weight (kg)").fill("18000")
    transcon = panel.locator('[data-carrier="transcon"]')
    expect(transcon).to_have_attribute("data-eligible", "yes")
    expect(panel.locator('[data-carrier="texas-only"]')).to_contain_text("outside operating regions (CA, IL)")
    expect(panel).to_contain_text("2 of 3 carriers can take this load")
    screenshot(page, "eligibility-chicago-los-angeles")

    # A heavier load leaves only the autonomous carrier; nothing has been saved while typing.
    page.get_by_label("Weight (kg)").fill("25000")
    expect(panel.locator('[data-carrier="any-road"]')).to_contain_text("weight 25000 kg over the carrier's 20000 kg")
    expect(panel).to_contain_text("1 of 3 carriers can take this load")
    assert not Shipment.objects.exists()
    network.assert_loopback_only()
