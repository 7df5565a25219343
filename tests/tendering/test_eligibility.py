"""The new-shipment form shows which carriers can take the load before it is saved, and why the others cannot."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from missions.choices import CarrierKind
from missions.models import Carrier, Shipment
from tests.conftest import verified_client
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db
URL = "/shipments/eligibility/"


@pytest.fixture
def carriers() -> dict[str, Carrier]:
    return {
        "texas": CarrierFactory(name="Texas Auto", slug="texas-auto", operating_regions=["TX", "AZ"]),
        "corridor": CarrierFactory(
            name="Corridor Auto", slug="corridor-auto", operating_regions=["IL", "MO", "OK", "TX", "NM", "AZ", "CA"]
        ),
        "human": CarrierFactory(
            name="Any Road",
            slug="any-road",
            kind=CarrierKind.HUMAN_DRIVEN,
            max_autonomy_level=0,
            operating_regions=[],
            hazmat_allowed=True,
            max_weight_kg=20000,
        ),
    }


def _fits(body: str) -> dict[str, str]:
    return dict(re.findall(r'data-carrier="([a-z0-9-]+)" data-eligible="(yes|no)"', body))


def test_the_panel_answers_for_the_lane_and_load_typed_so_far(dispatcher: User, carriers: dict[str, Carrier]) -> None:
    client = verified_client(dispatcher)
    body = client.get(URL, {"origin_region": "il", "destination_region": "CA", "weight_kg": "18000"}).content.decode()
    assert _fits(body) == {"corridor-auto": "yes", "any-road": "yes", "texas-auto": "no"}
    assert "2 of 3 carriers can take this load" in body
    assert "outside operating regions (CA, IL)" in body  # the same words the waterfall uses
    # Heavier than the human carrier takes, and hazmat, which no autonomous carrier here may haul.
    body = client.get(
        URL, {"origin_region": "IL", "destination_region": "CA", "weight_kg": "25000", "hazmat": "on"}
    ).content.decode()
    assert _fits(body) == {"corridor-auto": "no", "any-road": "no", "texas-auto": "no"}
    assert "No carrier can take this load as typed" in body
    assert "hazmat not allowed" in body and "weight 25000 kg over the carrier&#x27;s 20000 kg" in body
    # A shipment limited to SAE level 2 excludes level-4 autonomous carriers.
    body = client.get(
        URL, {"origin_region": "TX", "destination_region": "AZ", "max_autonomy_level": "2"}
    ).content.decode()
    assert "autonomy level 4 above the shipment&#x27;s limit 2" in body and _fits(body)["any-road"] == "yes"


def test_partial_or_bad_input_asks_for_the_lane_and_says_what_is_wrong(
    dispatcher: User, carriers: dict[str, Carrier]
) -> None:
    client = verified_client(dispatcher)
    empty = client.get(URL)
    assert empty.status_code == 200 and "Enter the origin and destination states" in empty.content.decode()
    assert _fits(empty.content.decode()) == {}
    bad = client.get(URL, {"origin_region": "ZZ", "destination_region": "CA", "weight_kg": "-4"}).content.decode()
    assert "Not valid yet: origin state, weight." in bad and _fits(bad) == {}
    # A bad weight alone does not hide the lane's answer: it is judged without the weight.
    body = client.get(URL, {"origin_region": "IL", "destination_region": "CA", "weight_kg": "lots"}).content.decode()
    assert _fits(body)["corridor-auto"] == "yes" and "Judged without: weight" in body
    assert Shipment.objects.count() == 0  # asking never creates anything


def test_the_form_shows_the_panel_and_keeps_it_after_a_refused_submit(
    dispatcher: User, carriers: dict[str, Carrier]
) -> None:
    client = verified_client(dispatcher)
    page = client.get("/shipments/new/").content.decode()
    assert 'data-eligibility-url="/shipments/eligibility/"' in page and "js/eligibility.js" in page
    refused = client.post("/shipments/new/", {"origin_region": "IL", "destination_region": "CA", "weight_kg": "18000"})
    assert refused.status_code == 400
    assert _fits(refused.content.decode())["corridor-auto"] == "yes"


def test_only_dispatchers_ask(readonly: User, carriers: dict[str, Carrier]) -> None:
    assert verified_client(readonly).get(URL, {"origin_region": "IL", "destination_region": "CA"}).status_code == 403


def test_the_demo_has_an_autonomous_carrier_for_the_playbooks_chicago_to_los_angeles_lane(
    dispatcher: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "a-long-demo-password-for-tests")
    call_command("seed_demo", quiet_logins=True, stdout=StringIO())
    body = (
        verified_client(dispatcher)
        .get(URL, {"origin_region": "IL", "destination_region": "CA", "weight_kg": "18000"})
        .content.decode()
    )
    fits = _fits(body)
    assert fits["transcon-autonomous"] == "yes"
    assert Carrier.objects.get(slug="transcon-autonomous").kind == CarrierKind.AUTONOMOUS
    assert fits["lonestar-autonomous"] == "no" and fits["sunbelt-driverless"] == "no"
