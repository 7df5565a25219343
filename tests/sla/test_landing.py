"""The SLA landing page (/sla/): every carrier's SLIs against target for a window, budget, burn state, links;
the contracts tab and the old URLs; who may see it; and "no traffic" wherever a carrier had none."""

from __future__ import annotations

import base64
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from missions.choices import CarrierKind
from missions.events import Actor
from missions.models import Carrier
from missions.partner.services import partner_client_create
from sla.choices import AlertSeverity, SLIName
from sla.models import BurnRateAlert
from sla.overview import SLICell, budget_text, cell_state, duration_text, value_text
from sla.services import sla_evaluate
from tests.conftest import verified_client
from tests.factories import CarrierFactory, ContractFactory
from tests.sla.fixtures import mission

pytestmark = pytest.mark.django_db


def row_of(body: str, slug: str) -> str:
    """The landing table's row of one carrier."""
    match = re.search(rf'<tr data-carrier="{re.escape(slug)}".*?</tr>', body, re.S)
    assert match, f"no row for {slug}"
    return match.group(0)


def cell_of(row: str, sli: str) -> str:
    match = re.search(rf'<td[^>]*data-sli="{sli}"[^>]*>.*?</td>', row, re.S)
    assert match, f"no cell for {sli}"
    return match.group(0)


def text(html: str) -> str:
    """What a reader sees: tags dropped, whitespace folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
def steady(carrier_a: Carrier) -> Carrier:
    """A carrier with a contract and traffic: 12 missions on time in the last hour, 3 late ones two days ago.

    Over 1 h it meets the on-time target; over 7 days (12 of 15) it misses it, yet nothing burns: the
    late missions are outside the burn rules' short windows.
    """
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1), on_time_target_pct=Decimal("95"))
    now = timezone.now()
    for k in range(12):
        mission(carrier_a, completed_at=now - timedelta(minutes=10 + k), due=now)
    for k in range(3):
        late = now - timedelta(days=2, minutes=k)
        mission(carrier_a, completed_at=late, due=late - timedelta(hours=1))
    sla_evaluate(carrier_id=carrier_a.pk, now=now)
    return carrier_a


@pytest.fixture
def idle_human() -> Carrier:
    """A human-driven carrier with a contract and no traffic at all: no missions, incidents or API calls."""
    carrier = CarrierFactory(name="Red River Freight", slug="red-river", kind=CarrierKind.HUMAN_DRIVEN)
    ContractFactory(carrier=carrier, effective_from=date(2020, 1, 1))
    sla_evaluate(carrier_id=carrier.pk, now=timezone.now())
    return carrier


# --- The landing page ----------------------------------------------------------------------------


def test_landing_shows_each_carriers_slis_against_target(steady: Carrier, readonly: User) -> None:
    body = verified_client(readonly).get("/sla/?window=7d").content.decode()
    row = row_of(body, steady.slug)
    # The carrier links to its dashboard, keeping the window.
    assert f'href="/sla/dashboard/carriers/{steady.pk}/?window=7d"' in row
    on_time = cell_of(row, SLIName.ON_TIME)
    assert 'data-state="missed"' in on_time and "sla-missed" in on_time
    assert "80.00 %" in text(on_time) and "target 95.00 %" in text(on_time) and "15 missions" in text(on_time)
    success = cell_of(row, SLIName.MISSION_SUCCESS)
    assert 'data-state="met"' in success and "100.00 %" in text(success) and "target 98.00 %" in text(success)
    # Budget: 3 late of 15 against an allowance of 5 % (0.75 missions) is overspent 4x; success keeps it all.
    assert "budget overspent 4x" in text(on_time)
    assert "budget 100 % left" in text(success)
    assert "Budget overspent 4x least left: On-time delivery rate" in text(row)
    # No open burn-rate alert: the carrier is not burning.
    assert 'data-burn-state="ok"' in row and "Not burning" in text(row)
    # An SLI with no events in the window (no API calls to this carrier) reads "no traffic".
    assert "no traffic" in text(cell_of(row, SLIName.API_ERROR_RATE))


def test_too_few_events_are_shown_but_not_judged(carrier_b: Carrier, readonly: User, settings: Any) -> None:
    """One late mission of one is 0 % on time, measured; the engine judges nothing under SLA_BURN_MIN_EVENTS,
    and neither does the page: no red, no spent budget."""
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(carrier=carrier_b, effective_from=date(2020, 1, 1))
    now = timezone.now()
    mission(carrier_b, completed_at=now - timedelta(minutes=5), due=now - timedelta(hours=1))
    sla_evaluate(carrier_id=carrier_b.pk, now=now)
    client = verified_client(readonly)
    row = row_of(client.get("/sla/?window=1h").content.decode(), carrier_b.slug)
    on_time = cell_of(row, SLIName.ON_TIME)
    assert 'data-state="low_traffic"' in on_time and "sla-missed" not in on_time
    assert "0.00 %" in text(on_time) and "1 mission: too few to judge" in text(on_time)
    assert "budget" not in text(on_time) and "Budget" not in text(row)
    assert "fewer than 10 events are not judged" in on_time
    # Nothing judged, nothing burning: the carrier is neither green nor red.
    assert 'data-burn-state="low_traffic"' in row and "Too few events" in text(row) and "Not burning" not in row
    cell = client.get("/sla/dashboard/comparison.json?window=1h").json()["rows"][0]["slis"][SLIName.ON_TIME]
    assert cell["value"] == 0.0 and cell["state"] == "low_traffic" and cell["met"] is None
    series = client.get(f"/sla/dashboard/carriers/{carrier_b.pk}/series.json?window=1h").json()
    assert series["series"][SLIName.ON_TIME]["value"] == [0.0] and series["series"][SLIName.ON_TIME]["budget"] == [None]
    assert series["burn_down"][SLIName.ON_TIME]["budget"] == [None] and series["min_events"] == 10
    # With the rule at one event, the same figure is judged: a miss, in red, with its budget.
    settings.SLA_BURN_MIN_EVENTS = 1
    row = row_of(client.get("/sla/?window=1h").content.decode(), carrier_b.slug)
    assert 'data-state="missed"' in cell_of(row, SLIName.ON_TIME) and "budget overspent 20x" in text(row)
    assert 'data-burn-state="ok"' in row


def test_the_window_picks_the_measurement(steady: Carrier, readonly: User) -> None:
    client = verified_client(readonly)
    one_hour = client.get("/sla/?window=1h").content.decode()
    seven_days = client.get("/sla/?window=7d").content.decode()
    assert "12 missions" in text(cell_of(row_of(one_hour, steady.slug), SLIName.ON_TIME))
    assert "100.00 %" in text(cell_of(row_of(one_hour, steady.slug), SLIName.ON_TIME))
    assert 'data-state="met"' in cell_of(row_of(one_hour, steady.slug), SLIName.ON_TIME)
    assert "15 missions" in text(cell_of(row_of(seven_days, steady.slug), SLIName.ON_TIME))
    assert "80.00 %" in text(cell_of(row_of(seven_days, steady.slug), SLIName.ON_TIME))
    # Every window the engine computes is offered, the chosen one marked.
    for window in ("1h", "24h", "7d", "30d", "month"):
        assert f'href="?window={window}"' in seven_days
    assert re.search(r'href="\?window=7d"[^>]*aria-current="true"', seven_days)
    # An unknown window falls back to 30 days rather than failing.
    fallback = client.get("/sla/?window=forever")
    assert fallback.status_code == 200
    assert re.search(r'href="\?window=30d"[^>]*aria-current="true"', fallback.content.decode())
    assert "rolling 30 days" in fallback.content.decode()


def burn_alert(carrier: Carrier, *, severity: str, sli: str, rate: str) -> BurnRateAlert:
    windows = {"page": (3600, 300, Decimal("14.4")), "ticket": (259200, 21600, Decimal("1"))}[severity]
    return BurnRateAlert.objects.create(
        carrier=carrier,
        sli=sli,
        severity=severity,
        long_window_seconds=windows[0],
        short_window_seconds=windows[1],
        threshold=windows[2],
        long_burn_rate=Decimal(rate),
        short_burn_rate=Decimal(rate) + 1,
        long_total=40,
        long_good=4,
        fired_at=timezone.now(),
    )


def test_burn_state_at_a_glance_from_the_open_alerts(steady: Carrier, carrier_b: Carrier, readonly: User) -> None:
    ContractFactory(carrier=carrier_b, effective_from=date(2020, 1, 1))
    mission(carrier_b, completed_at=timezone.now() - timedelta(minutes=5))
    sla_evaluate(carrier_id=carrier_b.pk, now=timezone.now())
    burn_alert(steady, severity=AlertSeverity.PAGE, sli=SLIName.ON_TIME, rate="90.9412")
    burn_alert(steady, severity=AlertSeverity.TICKET, sli=SLIName.ON_TIME, rate="2.25")
    burn_alert(carrier_b, severity=AlertSeverity.TICKET, sli=SLIName.TELEMETRY_INTEGRITY, rate="1.04")
    resolved = burn_alert(carrier_b, severity=AlertSeverity.PAGE, sli=SLIName.MISSION_SUCCESS, rate="30")
    BurnRateAlert.objects.filter(pk=resolved.pk).update(resolved_at=timezone.now())

    body = verified_client(readonly).get("/sla/").content.decode()
    paging = row_of(body, steady.slug)
    assert 'data-burn-state="page"' in paging and "Burning · page" in text(paging)
    assert "Page · On-time delivery rate: 90.9x" in text(paging)  # one decimal, as people read a burn rate
    assert "Ticket · On-time delivery rate: 2.3x" in text(paging)
    ticket = row_of(body, carrier_b.slug)
    assert 'data-burn-state="ticket"' in ticket and "Burning · ticket" in text(ticket)
    assert "Ticket · Telemetry integrity: 1.0x" in text(ticket)
    assert "30.0x" not in ticket  # a resolved alert no longer burns
    # The alert list above the table: severity with the incident severity it stands for, rates rounded.
    burning = text(body.split('id="sla-burning"')[1].split("</section>")[0])
    assert "Page · critical" in burning and "Ticket · warning" in burning
    assert "burning at 90.9x / 91.9x over 1 h / 5 min (threshold 14.4x)" in burning
    assert "90.9412" not in body


def test_empty_states(readonly: User) -> None:
    client = verified_client(readonly)
    nothing = client.get("/sla/").content.decode()
    assert "No carriers yet" in nothing and 'id="sla-comparison"' not in nothing

    never = CarrierFactory(name="Brand New Lines", slug="brand-new")
    ContractFactory(carrier=never, effective_from=date(2020, 1, 1))
    unmeasured = client.get("/sla/").content.decode()
    row = row_of(unmeasured, never.slug)
    assert 'data-burn-state="not_evaluated"' in row and "Not evaluated yet" in text(row)
    assert "not evaluated yet" in text(row) and row.count('data-state="not_evaluated"') == 7
    assert "%" not in text(row)  # no figure at all, neither 0 % nor 100 %
    assert "Nothing measured yet" in unmeasured

    # Measured without a contract: values, no targets, nothing judged, no budget.
    loose = CarrierFactory(name="Contractless Haulers", slug="contractless")
    mission(loose, completed_at=timezone.now() - timedelta(minutes=5), due=timezone.now() - timedelta(hours=1))
    sla_evaluate(carrier_id=loose.pk, now=timezone.now())
    body = client.get("/sla/").content.decode()
    row = row_of(body, loose.slug)
    assert 'data-burn-state="no_contract"' in row and "no contract" in text(row)
    on_time = cell_of(row, SLIName.ON_TIME)
    assert 'data-state="no_target"' in on_time and "0.00 %" in text(on_time) and "target" not in text(on_time)
    assert "sla-missed" not in row and "budget" not in text(on_time)
    assert "no target, no budget" in text(row)
    assert "Nothing measured yet" not in body


def test_links_and_tabs(steady: Carrier, readonly: User) -> None:
    body = verified_client(readonly).get("/sla/").content.decode()
    tabs = body.split('aria-label="SLA"')[1].split("</nav>")[0]
    assert re.search(r'href="/sla/"[^>]*aria-current="page"[^>]*>Overview', tabs)
    for href, name in (
        ("/sla/contracts/", "Contracts"),
        ("/sla/dashboard/breaches/", "Breaches"),
        ("/sla/dashboard/credits/", "Credits"),
    ):
        assert f'href="{href}">{name}' in tabs
    assert f'href="/sla/dashboard/carriers/{steady.pk}/?window=30d"' in body
    assert 'data-url="/sla/dashboard/comparison.json?window=30d"' in body


def test_contract_terms_have_their_own_tab_and_old_links_follow(steady: Carrier, readonly: User) -> None:
    client = verified_client(readonly)
    contracts = client.get("/sla/contracts/")
    assert contracts.status_code == 200
    body = contracts.content.decode()
    assert "SLA contracts" in body and re.search(r'href="/sla/contracts/"[^>]*aria-current="page"', body)
    assert steady.name in body and "95.00 %" in body
    # /sla/ used to be the paginated contract list: its page links land on the contracts tab.
    old_page = client.get("/sla/?page=2")
    assert old_page.status_code == 302 and old_page["Location"] == "/sla/contracts/?page=2"
    # /sla/dashboard/ was the overview: it moved to /sla/ for good, the window kept.
    moved = client.get("/sla/dashboard/?window=7d")
    assert moved.status_code == 301 and moved["Location"] == "/sla/?window=7d"
    assert client.get("/sla/dashboard/")["Location"] == "/sla/"
    # The carrier dashboard's crumb and the other tabs lead back to the landing page.
    for url in (f"/sla/dashboard/carriers/{steady.pk}/", "/sla/dashboard/breaches/", "/sla/dashboard/credits/"):
        assert 'href="/sla/' in client.get(url).content.decode(), url


@pytest.mark.parametrize("persona", ["readonly", "dispatcher", "oncall", "sla_manager", "admin_user"])
def test_every_console_role_may_see_the_sla_pages(persona: str, steady: Carrier, request: Any) -> None:
    """Reading SLAs needs VIEW_CONSOLE, which every role has (tms_console/roles.py)."""
    client = verified_client(request.getfixturevalue(persona))
    for url in ("/sla/", "/sla/contracts/", "/sla/dashboard/comparison.json", f"/sla/dashboard/carriers/{steady.pk}/"):
        assert client.get(url).status_code == 200, url


def test_no_role_no_sla(steady: Carrier, outsider: User) -> None:
    for url in ("/sla/", "/sla/contracts/", "/sla/dashboard/comparison.json", "/sla/dashboard/"):
        assert verified_client(outsider).get(url).status_code == 403, url
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and "/account/login/" in anonymous["Location"], url


def test_the_landing_page_reads_a_fixed_number_of_queries(readonly: User) -> None:
    """Carriers, their last evaluation, measurements, contracts and alerts: the count does not grow per carrier."""
    client = verified_client(readonly)

    def carriers(n: int) -> None:
        for _ in range(n):
            carrier = CarrierFactory()
            ContractFactory(carrier=carrier, effective_from=date(2020, 1, 1))
            mission(carrier, completed_at=timezone.now() - timedelta(minutes=5))
            sla_evaluate(carrier_id=carrier.pk, now=timezone.now())
            burn_alert(carrier, severity=AlertSeverity.TICKET, sli=SLIName.ON_TIME, rate="3")

    def queries() -> int:
        client.get("/sla/")  # the session and permission caches warm up first
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/sla/").status_code == 200
        return len(captured)

    carriers(2)
    two = queries()
    carriers(6)
    assert queries() == two


def test_stale_evaluation_is_flagged(carrier_a: Carrier, readonly: User, settings: Any) -> None:
    settings.SLA_EVALUATE_SECONDS = 60
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    sla_evaluate(carrier_id=carrier_a.pk, now=timezone.now() - timedelta(minutes=30))
    row = row_of(verified_client(readonly).get("/sla/").content.decode(), carrier_a.slug)
    assert "stale" in text(row)
    sla_evaluate(carrier_id=carrier_a.pk, now=timezone.now())
    row = row_of(verified_client(readonly).get("/sla/").content.decode(), carrier_a.slug)
    assert "stale" not in text(row)


# --- No traffic is never drawn as failure ------------------------------------------------------------


def test_no_traffic_on_the_landing_page(steady: Carrier, idle_human: Carrier, readonly: User) -> None:
    body = verified_client(readonly).get("/sla/?window=30d").content.decode()
    row = row_of(body, idle_human.slug)
    assert row.count('data-state="no_traffic"') == 7
    for sli in SLIName.values:
        cell = cell_of(row, sli)
        assert "no traffic" in text(cell), sli
        assert "0.00 %" not in text(cell) and "100.00 %" not in text(cell), sli
        assert "sla-missed" not in cell and "sla-met" not in cell, sli
    assert 'data-burn-state="no_traffic"' in row and "No traffic" in text(row)
    # The busy carrier beside it keeps its figures.
    assert "80.00 %" in text(cell_of(row_of(body, steady.slug), SLIName.ON_TIME))


def test_no_traffic_on_the_carrier_dashboard(idle_human: Carrier, readonly: User) -> None:
    body = verified_client(readonly).get(f"/sla/dashboard/carriers/{idle_human.pk}/?window=24h").content.decode()
    table = body.split('id="sla-latest"')[1].split("</table>")[0]
    assert table.count('data-state="no_traffic"') == 7
    assert "no traffic" in text(table) and "No mission finished in this window." in text(table)
    assert "0.00 %" not in text(table) and "100.00 %" not in text(table)
    assert "sla-missed" not in table and "sla-met" not in table
    assert "No traffic" in text(body.split("<h1>")[1].split("</h1>")[0])


def test_no_traffic_in_the_chart_json(steady: Carrier, idle_human: Carrier, readonly: User) -> None:
    client = verified_client(readonly)
    sla_evaluate(carrier_id=idle_human.pk, now=timezone.now() + timedelta(seconds=1))
    series = client.get(f"/sla/dashboard/carriers/{idle_human.pk}/series.json?window=1h").json()
    on_time = series["series"][SLIName.ON_TIME]
    assert on_time["value"] == [None, None]  # a gap, never 0
    assert on_time["state"] == ["no_traffic", "no_traffic"] and on_time["total"] == [0, 0]
    assert on_time["budget"] == [None, None] and on_time["target"] == [95.0, 95.0]
    assert all(v is None for b in series["burn_down"].values() for v in b["budget"])
    assert series["units"]["pct"] == "%"

    rows = {r["carrier_id"]: r for r in client.get("/sla/dashboard/comparison.json?window=1h").json()["rows"]}
    idle = rows[idle_human.pk]
    assert idle["burn_state"] == "no_traffic"
    for sli in SLIName.values:
        cell = idle["slis"][sli]
        assert cell["value"] is None and cell["met"] is None and cell["state"] == "no_traffic", sli
        assert cell["budget_remaining_pct"] is None and cell["reason"], sli
    busy = client.get("/sla/dashboard/comparison.json?window=7d").json()["rows"][0]["slis"][SLIName.ON_TIME]
    assert busy["value"] == 80.0 and busy["met"] is False and busy["state"] == "missed"
    assert busy["target"] == 95.0 and busy["value_text"] == "80.00 %" and busy["reason"] is None


def test_never_evaluated_carrier_in_the_comparison_json(readonly: User) -> None:
    carrier = CarrierFactory(name="Brand New Lines", slug="brand-new")
    rows = verified_client(readonly).get("/sla/dashboard/comparison.json").json()["rows"]
    assert [r["carrier_id"] for r in rows] == [carrier.pk]
    assert rows[0]["burn_state"] == "not_evaluated" and rows[0]["evaluated_at"] is None
    assert {c["state"] for c in rows[0]["slis"].values()} == {"not_evaluated"}
    assert {c["value"] for c in rows[0]["slis"].values()} == {None}


def metric_lines(body: str, name: str, carrier: Carrier) -> list[str]:
    return [line for line in body.splitlines() if line.startswith(name + "{") and f'carrier="{carrier.slug}"' in line]


def test_no_traffic_on_metrics_is_absent_not_zero(steady: Carrier, idle_human: Carrier) -> None:
    body = Client().get("/metrics").content.decode()
    # The idle carrier: no value and no budget series at all; its event counts say 0 (no traffic).
    assert metric_lines(body, "tms_sla_sli_value", idle_human) == []
    assert metric_lines(body, "tms_sla_error_budget_remaining_ratio", idle_human) == []
    events = metric_lines(body, "tms_sla_sli_events", idle_human)
    assert len(events) == 35 and all(line.endswith(" 0.0") for line in events)
    assert len(metric_lines(body, "tms_sla_sli_target", idle_human)) == 7  # it has a contract
    # The busy carrier has values, and none for the SLIs it had no traffic for (no API calls).
    values = metric_lines(body, "tms_sla_sli_value", steady)
    assert 'tms_sla_sli_value{carrier="carrier-a",sli="on_time",unit="pct",window="7d"} 80.0' in values
    assert not [line for line in values if 'sli="api_error_rate"' in line]
    assert not [line for line in values if 'sli="failover_time"' in line]
    # A carrier never evaluated has no SLA series whatsoever.
    CarrierFactory(slug="never-measured")
    body = Client().get("/metrics").content.decode()
    assert "tms_sla_sli_events{" in body and 'carrier="never-measured"' not in body


def test_measured_without_a_contract_has_no_target_or_budget_on_metrics(carrier_b: Carrier) -> None:
    mission(carrier_b, completed_at=timezone.now() - timedelta(minutes=5))
    sla_evaluate(carrier_id=carrier_b.pk, now=timezone.now())
    body = Client().get("/metrics").content.decode()
    assert metric_lines(body, "tms_sla_sli_target", carrier_b) == []
    assert metric_lines(body, "tms_sla_error_budget_remaining_ratio", carrier_b) == []
    assert 'tms_sla_sli_value{carrier="carrier-b",sli="on_time",unit="pct",window="1h"} 100.0' in body


def test_too_few_events_have_a_value_but_no_budget_on_metrics(carrier_b: Carrier, settings: Any) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(carrier=carrier_b, effective_from=date(2020, 1, 1))
    mission(carrier_b, completed_at=timezone.now() - timedelta(minutes=5), due=timezone.now() - timedelta(hours=1))
    sla_evaluate(carrier_id=carrier_b.pk, now=timezone.now())
    body = Client().get("/metrics").content.decode()
    assert 'tms_sla_sli_value{carrier="carrier-b",sli="on_time",unit="pct",window="1h"} 0.0' in body
    assert 'tms_sla_sli_events{carrier="carrier-b",sli="on_time",window="1h"} 1.0' in body
    assert metric_lines(body, "tms_sla_error_budget_remaining_ratio", carrier_b) == []
    settings.SLA_BURN_MIN_EVENTS = 1
    body = Client().get("/metrics").content.decode()
    assert 'tms_sla_error_budget_remaining_ratio{carrier="carrier-b",sli="on_time",window="1h"} -19.0' in body


def partner_api(carrier: Carrier) -> APIClient:
    issued = partner_client_create(
        carrier_id=carrier.pk, name=f"{carrier.slug} api", scopes=["missions:read"], actor=Actor.system("test")
    )
    basic = base64.b64encode(f"{issued.client_id}:{issued.client_secret}".encode()).decode()
    token = Client().post("/oauth2/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert token.status_code == 200, token.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access_token']}")
    return client


def test_no_traffic_in_the_api_summary_is_null_with_a_reason(
    steady: Carrier, idle_human: Carrier, readonly: User
) -> None:
    idle = partner_api(idle_human).get("/api/v1/sla").json()
    for sli, windows in idle["slis"].items():
        assert set(windows) == {"1h", "24h", "7d", "30d", "month"}, sli
        for window, m in windows.items():
            assert m["value"] is None and m["budget_remaining_pct"] is None, (sli, window)
            assert m["state"] == "no_traffic" and m["total"] == 0, (sli, window)
            assert m["no_data_reason"] and "window" in m["no_data_reason"], (sli, window)
    assert idle["slis"]["on_time"]["1h"]["no_data_reason"] == "No mission finished in this window."

    busy = partner_api(steady).get("/api/v1/sla").json()
    on_time = busy["slis"]["on_time"]["7d"]
    assert on_time["value"] == "80.0000" and on_time["state"] == "missed" and on_time["no_data_reason"] is None
    assert busy["slis"]["on_time"]["1h"]["state"] == "met"
    assert busy["slis"]["api_error_rate"]["1h"]["state"] == "no_traffic"
    # The console's JSON copy of the summary says the same.
    console = verified_client(readonly).get(f"/sla/dashboard/carriers/{idle_human.pk}/summary.json").json()
    assert console["slis"] == idle["slis"]


def test_failover_without_any_failover_misses_rather_than_reads_no_traffic() -> None:
    assert cell_state(SLIName.FAILOVER_TIME, None, Decimal(900), 12) == "missed"
    assert cell_state(SLIName.FAILOVER_TIME, None, Decimal(900), 0) == "no_traffic"
    assert cell_state(SLIName.FAILOVER_TIME, None, None, 12) == "no_target"
    assert cell_state(SLIName.FAILOVER_TIME, None, Decimal(900), 2) == "low_traffic"  # SLA_BURN_MIN_EVENTS = 10
    cell = SLICell(SLIName.FAILOVER_TIME, "seconds", None, Decimal(900), 0, 12, None, "missed")
    assert cell.value_text == "none failed over"
    assert cell.reason == "None of the 12 lost-comms incidents was failed over."


def test_wording_of_values_budgets_and_durations() -> None:
    assert value_text(Decimal("96.5"), "pct") == "96.50 %"
    assert value_text(Decimal("850.4"), "ms") == "850 ms"
    assert value_text(None, "pct") == ""
    assert duration_text(Decimal(45)) == "45 s"
    assert duration_text(Decimal(900)) == "15 min"
    assert duration_text(Decimal(5400)) == "90 min"
    assert duration_text(Decimal(9000)) == "2.5 h"
    assert budget_text(Decimal("42.54")) == "42.5 % left"
    assert budget_text(Decimal(0)) == "all spent"
    assert budget_text(Decimal(-100)) == "overspent 2x"
    assert budget_text(Decimal(-9900)) == "overspent 100x"
    assert budget_text(None) == ""
