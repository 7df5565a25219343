"""The marketplace: live, certified carriers side by side for a lane, with their terms and 30-day SLA record."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from missions.choices import CarrierStatus
from missions.models import Carrier, CertificationRun, CertificationStatus
from sla.choices import SLIName, WindowName
from sla.models import SLIMeasurement
from tests.conftest import verified_client
from tests.factories import CarrierFactory, ContractFactory

pytestmark = pytest.mark.django_db


def _certified(carrier: Carrier, by: User, *, version: str = "1.1.0", days_ago: int = 3) -> None:
    finished = timezone.now() - timedelta(days=days_ago)
    CertificationRun.objects.create(
        carrier=carrier, run_key=uuid.uuid4(), contract_version=version, sandbox_url="https://93.184.216.34",
        status=CertificationStatus.PASSED, checks=[], started_by=by, started_at=finished, finished_at=finished,
    )  # fmt: skip


def _record(carrier: Carrier, sli: str, value: str) -> None:
    now = timezone.now()
    SLIMeasurement.objects.create(
        carrier=carrier, sli=sli, window=WindowName.D30, window_start=now - timedelta(days=30), window_end=now,
        good=1, total=1, value=Decimal(value), unit="pct", computed_at=now,
    )  # fmt: skip


def _row(page: str, slug: str) -> str:
    start = page.index(f'data-testid="market-{slug}"')
    return page[start : page.index("</tr>", start)]


def test_certified_live_carriers_side_by_side_those_covering_the_lane_first(dispatcher: User) -> None:
    texas = CarrierFactory(name="Texas Only", slug="texas-only", operating_regions=["TX"], max_autonomy_level=4)
    both = CarrierFactory(name="Red River", slug="red-river", operating_regions=["TX", "OK"], hazmat_allowed=True)
    onboarding = CarrierFactory(name="Newcomer", slug="newcomer", status=CarrierStatus.ONBOARDING)
    stale = CarrierFactory(name="Old Contract", slug="old-contract")
    uncertified = CarrierFactory(name="Never Certified", slug="never-certified")
    for c in (texas, both, onboarding):
        _certified(c, dispatcher)
    _certified(stale, dispatcher, version="0.9.0")
    ContractFactory(carrier=both, monthly_fee_usd=Decimal("42000"))
    _record(both, SLIName.ON_TIME, "97.5")
    _record(both, SLIName.MISSION_SUCCESS, "99.2")
    _record(texas, SLIName.ON_TIME, "99.9")

    answer = verified_client(dispatcher).get("/carriers/marketplace/", {"origin": "tx", "destination": "ok"})

    page = answer.content.decode()
    assert answer.status_code == 200
    assert page.index("market-red-river") < page.index("market-texas-only")  # covering the lane comes first
    for absent in (onboarding, stale, uncertified):
        assert f"market-{absent.slug}" not in page
    red = _row(page, "red-river")
    assert "covers TX→OK" in red and "USD 42,000/month" in red and "97.5 %" in red and "99.2 %" in red
    assert "hazmat" in red and "no data" in red  # telemetry integrity not measured yet
    assert "outside its regions" in _row(page, "texas-only") and "no contract in force" in _row(page, "texas-only")


def test_a_bad_lane_is_a_clear_error_and_no_lane_lists_everyone_certified(dispatcher: User) -> None:
    _certified(CarrierFactory(name="Anywhere", slug="anywhere", operating_regions=[]), dispatcher)
    client = verified_client(dispatcher)

    bad = client.get("/carriers/marketplace/", {"origin": "Texas", "destination": "1"})
    assert bad.status_code == 400 and "two two-letter state codes" in bad.content.decode()
    plain = client.get("/carriers/marketplace/").content.decode()
    assert "market-anywhere" in plain and "covers" in _row(plain, "anywhere")


def test_the_marketplace_is_for_console_users(outsider: User) -> None:
    assert verified_client(outsider).get("/carriers/marketplace/").status_code == 403
