"""Multi-window multi-burn-rate alerts (1h/5m and 6h/30m at 14.4x / 6x page, 3d/6h at 1x ticket)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from missions.choices import MissionStatus
from missions.events import Actor, event_record
from missions.models import AuditEvent, Carrier
from runbooks.models import Incident
from runbooks.services import incident_open
from sla.choices import AlertSeverity, SLIName
from sla.models import BurnRateAlert, SLIMeasurement
from sla.services import (
    BURN_RULES,
    budget_remaining_pct,
    burn_rate,
    burn_rate_label,
    burn_rule_fires,
    sla_evaluate,
)
from sla.sli import SLIResult
from tests.factories import ContractFactory
from tests.sla.fixtures import T0, at, call, mission

PAGE_FAST = BURN_RULES[0]  # 1h / 5m at 14.4x
TICKET = BURN_RULES[2]  # 3d / 6h at 1x


def result(good: int, total: int, window: str = "1h") -> SLIResult:
    return SLIResult(SLIName.MISSION_SUCCESS, 1, window, T0 - timedelta(hours=1), T0, good, total, None, "pct")


def test_burn_rate_is_error_ratio_over_budget() -> None:
    # SLO 99 % -> budget 1 %; 15 bad of 100 = 15 % errors = 15x.
    assert burn_rate(result(85, 100), Decimal("0.99")) == Decimal("15.0000")
    assert burn_rate(result(100, 100), Decimal("0.99")) == Decimal("0")
    assert burn_rate(result(0, 0), Decimal("0.99")) is None
    # 100 % objective: no budget at all.
    assert burn_rate(result(99, 100), Decimal("1")) == Decimal("Infinity")


@pytest.mark.parametrize(
    ("good", "total", "fires"),
    [
        (85, 100, True),  # 15x > 14.4x
        (86, 100, False),  # 14x
        (856, 1000, False),  # exactly 14.4x: the workbook's condition is strictly greater
        (855, 1000, True),  # 14.5x
    ],
)
def test_page_threshold_is_strict(good: int, total: int, fires: bool) -> None:
    long, short = result(good, total), result(good, total, "5m")
    assert burn_rule_fires(long, short, Decimal("0.99"), PAGE_FAST, min_events=10) is fires


def test_both_windows_must_burn() -> None:
    burning, calm = result(0, 100), result(100, 100, "5m")
    assert burn_rule_fires(burning, calm, Decimal("0.99"), PAGE_FAST, min_events=10) is False
    assert burn_rule_fires(calm, burning, Decimal("0.99"), PAGE_FAST, min_events=10) is False
    # A short window without traffic cannot confirm the long one.
    assert burn_rule_fires(burning, result(0, 0, "5m"), Decimal("0.99"), PAGE_FAST, min_events=10) is False


def test_minimum_traffic_rule() -> None:
    # One failure out of 9 missions on a quiet day is 11 % errors (11x a 1 % budget) but pages no one.
    nine = result(8, 9)
    assert burn_rule_fires(nine, nine, Decimal("0.99"), TICKET, min_events=10) is False
    ten = result(9, 10)
    assert burn_rule_fires(ten, ten, Decimal("0.99"), TICKET, min_events=10) is True
    assert burn_rule_fires(ten, ten, Decimal("0.99"), TICKET, min_events=11) is False


def test_budget_remaining() -> None:
    # 1000 events at 99 % -> 10 bad allowed; 4 bad -> 60 % left; 15 bad -> -50 %.
    assert budget_remaining_pct(result(996, 1000), Decimal("0.99")) == Decimal("60.0000")
    assert budget_remaining_pct(result(985, 1000), Decimal("0.99")) == Decimal("-50.0000")
    assert budget_remaining_pct(result(0, 0), Decimal("0.99")) is None


@pytest.mark.django_db
def test_evaluation_pages_once_opens_an_incident_then_resolves(carrier_a: Carrier, settings: Any) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(
        carrier=carrier_a,
        effective_from=date(2026, 1, 1),
        mission_success_target_pct=Decimal("98"),
        on_time_target_pct=Decimal("95"),
    )
    with time_machine.travel(T0, tick=False):
        for k in range(12):
            mission(carrier_a, status=MissionStatus.FAILED, completed_at=at(-4) + timedelta(seconds=k))
        evaluation = sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    fired = {(a.sli, a.severity) for a in evaluation.alerts_fired}
    # All 12 failed within 5 minutes: on-time and success burn at 20x and 50x in every window.
    assert fired == {
        (SLIName.ON_TIME, AlertSeverity.PAGE),
        (SLIName.ON_TIME, AlertSeverity.TICKET),
        (SLIName.MISSION_SUCCESS, AlertSeverity.PAGE),
        (SLIName.MISSION_SUCCESS, AlertSeverity.TICKET),
    }
    page = BurnRateAlert.objects.get(sli=SLIName.MISSION_SUCCESS, severity=AlertSeverity.PAGE)
    assert page.long_burn_rate == Decimal("50")
    incident = Incident.objects.get(pk=page.incident_id)
    assert incident.kind == "sla_breach" and incident.carrier_id == carrier_a.pk
    # The same burn over the 3 d / 6 h windows belongs to the incident its page opened.
    ticket = BurnRateAlert.objects.get(sli=SLIName.MISSION_SUCCESS, severity=AlertSeverity.TICKET)
    assert ticket.incident_id == page.incident_id
    # 5 reporting windows x 7 SLIs stored, with budgets.
    assert SLIMeasurement.objects.filter(carrier=carrier_a, computed_at=T0).count() == 35
    month = SLIMeasurement.objects.get(carrier=carrier_a, computed_at=T0, sli=SLIName.MISSION_SUCCESS, window="month")
    assert (month.good, month.total, month.value, month.target) == (0, 12, Decimal("0"), Decimal("98"))
    assert month.budget_remaining_pct == Decimal("-4900")  # 12 bad of 0.24 allowed

    # A minute later still burning: no second alert.
    later = T0 + timedelta(minutes=1)
    with time_machine.travel(later, tick=False):
        again = sla_evaluate(carrier_id=carrier_a.pk, now=later)
    assert again.alerts_fired == []
    assert BurnRateAlert.objects.count() == 4

    # Five hours later the 5 m / 30 m / 1 h windows are clean: both pages resolve; the 6 h window still
    # holds the failures, so the 3 d / 6 h ticket stays open.
    quiet = T0 + timedelta(hours=5)
    with time_machine.travel(quiet, tick=False):
        cleared = sla_evaluate(carrier_id=carrier_a.pk, now=quiet)
    assert len(cleared.alerts_resolved) == 2
    open_severities = BurnRateAlert.objects.filter(resolved_at__isnull=True).values_list("severity", flat=True)
    assert set(open_severities) == {AlertSeverity.TICKET}
    # After seven hours the 6 h window is empty too and the tickets resolve.
    calm = T0 + timedelta(hours=7)
    with time_machine.travel(calm, tick=False):
        assert len(sla_evaluate(carrier_id=carrier_a.pk, now=calm).alerts_resolved) == 2
    assert not BurnRateAlert.objects.filter(resolved_at__isnull=True).exists()
    assert AuditEvent.objects.filter(action="sla.burn_alert_fired").count() == 4


@pytest.mark.django_db
def test_one_failure_on_a_quiet_day_does_not_page(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    with time_machine.travel(T0, tick=False):
        mission(carrier_a, status=MissionStatus.FAILED, completed_at=at(-3))
        mission(carrier_a, status=MissionStatus.COMPLETED, completed_at=at(-2))
        evaluation = sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    assert evaluation.alerts_fired == []
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_without_a_contract_measures_but_never_alerts(carrier_a: Carrier) -> None:
    with time_machine.travel(T0, tick=False):
        for k in range(20):
            mission(carrier_a, status=MissionStatus.FAILED, completed_at=at(-1) + timedelta(seconds=k))
        evaluation = sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    assert evaluation.alerts_fired == []
    assert SLIMeasurement.objects.filter(target__isnull=True).count() == 35


def test_alert_windows_read_as_people_say_them() -> None:
    alert = BurnRateAlert(long_window_seconds=259200, short_window_seconds=21600)
    assert alert.windows_label == "3 d / 6 h"
    assert BurnRateAlert(long_window_seconds=3600, short_window_seconds=300).windows_label == "1 h / 5 min"


def test_burn_rates_read_as_people_say_them() -> None:
    assert burn_rate_label(Decimal("90.9091")) == "90.9x"
    assert burn_rate_label(Decimal("14.45")) == "14.5x"
    assert burn_rate_label(Decimal("0")) == "0.0x"
    assert burn_rate_label(None) == "no traffic"


@pytest.mark.django_db
def test_a_page_opens_an_incident_with_its_runbook_and_the_incident_follows_its_alerts(
    carrier_a: Carrier, settings: Any
) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1), mission_success_target_pct=Decimal("98"))
    with time_machine.travel(T0, tick=False):
        for k in range(12):
            mission(carrier_a, status=MissionStatus.FAILED, completed_at=at(-4) + timedelta(seconds=k))
        sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    incident = Incident.objects.get(kind="sla_breach", carrier=carrier_a)
    # A page is critical on the incident, the SLA-breach runbook is attached, and figures are rounded.
    assert incident.severity == "critical"
    assert incident.run.runbook.slug == "sla-breach"
    assert re.search(r"burning error budget at \d+\.\dx$", incident.title), incident.title
    assert re.search(r"burn rate \d+\.\dx and 5m burn rate \d+\.\dx exceed 14\.4x", incident.summary), incident.summary
    linked = BurnRateAlert.objects.filter(incident_id=incident.pk, resolved_at__isnull=True)
    assert {a.severity for a in linked} == {AlertSeverity.PAGE, AlertSeverity.TICKET}

    # Five hours later only the tickets burn: the incident is a warning, still open, and says why.
    quiet = T0 + timedelta(hours=5)
    with time_machine.travel(quiet, tick=False):
        sla_evaluate(carrier_id=carrier_a.pk, now=quiet)
    incident.refresh_from_db()
    assert (incident.severity, incident.status) == ("warning", "triggered")
    change = AuditEvent.objects.get(subject_type="incident", subject_id=incident.pk, action="incident.severity_changed")
    assert change.before == {"severity": "critical"} and change.after == {"severity": "warning"}

    # Seven hours later nothing burns: mitigated, kept open for review, never resolved by itself.
    calm = T0 + timedelta(hours=7)
    with time_machine.travel(calm, tick=False):
        sla_evaluate(carrier_id=carrier_a.pk, now=calm)
    incident.refresh_from_db()
    assert incident.status == "mitigated" and incident.resolved_at is None
    moved = AuditEvent.objects.get(subject_type="incident", subject_id=incident.pk, action="incident.status_changed")
    assert "stays open for review" in moved.data["note"]

    # A new page-level burn while it is under review makes it critical again (one incident, not two).
    again = T0 + timedelta(hours=8)
    with time_machine.travel(again, tick=False):
        for k in range(12):
            mission(carrier_a, status=MissionStatus.FAILED, completed_at=again - timedelta(minutes=2, seconds=k))
        sla_evaluate(carrier_id=carrier_a.pk, now=again)
    incident.refresh_from_db()
    assert incident.severity == "critical"
    assert Incident.objects.filter(kind="sla_breach", carrier=carrier_a).count() == 1


@pytest.mark.django_db
def test_a_telemetry_burn_caused_by_open_lost_comms_joins_that_incident_instead_of_paging_again(
    carrier_a: Carrier, settings: Any
) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    silent = mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=at(-90))  # never reports
    lost, _ = incident_open(
        actor=Actor.system("detector"), kind="lost_comms", title="Lost communications", mission=silent
    )
    with time_machine.travel(T0, tick=False):
        sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    page = BurnRateAlert.objects.get(sli=SLIName.TELEMETRY_INTEGRITY, severity=AlertSeverity.PAGE)
    assert page.incident_id == lost.pk
    assert not Incident.objects.filter(kind="sla_breach").exists()  # one incident, one page
    note = AuditEvent.objects.get(subject_type="incident", subject_id=lost.pk, action="incident.note")
    assert "Telemetry integrity is burning its error budget" in note.data["text"]

    # The burn ending does not move the lost-comms incident: it follows its own runbook.
    quiet = T0 + timedelta(days=4)
    with time_machine.travel(quiet, tick=False):
        silent.status = MissionStatus.COMPLETED
        silent.completed_at = T0
        silent.save(update_fields=["status", "completed_at"])
        # What the mission service records with the change (the SLA rollups follow it).
        event_record(
            actor=Actor.system("test"), action="mission.status_changed", subject_type="mission",
            subject_id=silent.pk, carrier=carrier_a, after={"status": MissionStatus.COMPLETED},
        )  # fmt: skip
        sla_evaluate(carrier_id=carrier_a.pk, now=quiet)
    page.refresh_from_db()
    lost.refresh_from_db()
    assert page.resolved_at is not None
    assert (lost.status, lost.severity) == ("triggered", "error")


@pytest.mark.django_db
def test_a_handful_of_failed_api_calls_pages_no_one_and_404s_for_unknown_tenders_do_not_count(
    carrier_a: Carrier, settings: Any
) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    with time_machine.travel(T0, tick=False):
        # Nine carrier failures in the last five minutes: 100 % errors, but too few calls to judge ...
        for k in range(9):
            call(carrier_a, when=at(-4) + timedelta(seconds=k), latency_ms=50, ok=False)
        # ... and a storm of 404s for tenders the carrier never received: recorded, not counted.
        for k in range(50):
            call(carrier_a, when=at(-3) + timedelta(seconds=k), latency_ms=5, ok=False, status_code=404)
        quiet = sla_evaluate(carrier_id=carrier_a.pk, now=T0)
        assert quiet.alerts_fired == []
        hour = quiet.results[(SLIName.API_ERROR_RATE, "1h")]
        assert (hour.good, hour.total, hour.inputs["not_counted"]) == (0, 9, 50)

        # The tenth failure is enough traffic: the page fires, so it was the rule that held it back.
        call(carrier_a, when=at(-1), latency_ms=50, ok=False)
        loud = sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    fired = {(a.sli, a.severity) for a in loud.alerts_fired}
    assert (SLIName.API_ERROR_RATE, AlertSeverity.PAGE) in fired
    assert SLIName.API_LATENCY not in {sli for sli, _ in fired}
    title = Incident.objects.get(kind="sla_breach").title
    assert title.endswith("Carrier API error rate burning error budget at 100.0x")


@pytest.mark.django_db
def test_a_telemetry_burn_while_a_truck_is_silent_does_not_page_before_lost_comms_is_raised(
    carrier_a: Carrier, settings: Any
) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1), telemetry_gap_seconds=60)
    silent = mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=at(-90))  # never reports
    with time_machine.travel(T0, tick=False):
        sla_evaluate(carrier_id=carrier_a.pk, now=T0)
    page = BurnRateAlert.objects.get(sli=SLIName.TELEMETRY_INTEGRITY, severity=AlertSeverity.PAGE)
    assert page.incident_id is None and not Incident.objects.exists()  # lost comms will page, once
    fired = AuditEvent.objects.get(action="sla.burn_alert_fired", subject_id=page.pk)
    assert fired.after["inhibited"] == f"{silent.vehicle.external_id} silent past the 60 s gap threshold (lost comms)"
