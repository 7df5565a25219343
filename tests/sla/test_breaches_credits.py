"""Breaches with evidence, the manager's decision, credit arithmetic, the append-only ledger and its exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import AuditEvent, Carrier
from sla.choices import BreachStatus, SLIName
from sla.export import LEDGER_COLUMNS, ledger_csv, ledger_json
from sla.models import Breach, Contract, CreditEntry
from sla.reports import ledger_entries
from sla.selectors import on_time_rate
from sla.services import breach_decide, breach_record, credit_amount, sla_evaluate, sla_month_close
from sla.sli import SLIResult
from tests.factories import ContractFactory
from tests.sla.fixtures import T0, mission
from tms_console.domain import DomainError, IllegalTransition

pytestmark = pytest.mark.django_db
TIERS = [{"below_pct": 99, "credit_pct": 5}, {"below_pct": 95, "credit_pct": 10}, {"below_pct": 90, "credit_pct": 25}]


@pytest.mark.parametrize(
    ("fee", "pct", "expected"),
    [
        ("50000", "5", "2500.00"),
        ("12345.67", "7.5", "925.93"),  # 925.92525 -> half-up
        ("333.33", "2.5", "8.33"),  # 8.33325
        ("0.10", "5", "0.01"),  # 0.005: half-up, not banker's rounding (which would give 0.00)
        ("0.30", "5", "0.02"),  # 0.015 -> 0.02
        ("99999.99", "100", "99999.99"),
        ("1000", "0", "0.00"),
    ],
)
def test_credit_arithmetic_by_hand(fee: str, pct: str, expected: str) -> None:
    assert credit_amount(monthly_fee_usd=Decimal(fee), credit_pct=Decimal(pct)) == Decimal(expected)


def _contract(carrier: Carrier, fee: str = "50000", tiers: list[dict[str, int]] | None = None) -> Contract:
    return ContractFactory(
        carrier=carrier,
        effective_from=date(2026, 1, 1),
        monthly_fee_usd=Decimal(fee),
        credit_schedule=tiers if tiers is not None else TIERS,
    )


def _breach(contract: Contract, good: int, total: int = 100, sli: str = SLIName.ON_TIME) -> Breach:
    start, end = T0.replace(day=1, hour=0), T0.replace(month=4, day=1, hour=0)
    value = Decimal(good) * 100 / Decimal(total)
    result = SLIResult(sli, contract.carrier_id, "month", start, end, good, total, value, "pct", {"finished": total})
    return breach_record(
        carrier_id=contract.carrier_id, contract_id=contract.pk, result=result, target=Decimal("95"),
        actor=Actor.system("test"),
    )  # fmt: skip


def test_confirmed_breach_credits_the_tier_of_its_attainment(carrier_a: Carrier, sla_manager: User) -> None:
    contract = _contract(carrier_a)
    breach = _breach(contract, good=92)  # 92 % sits in [90, 95) -> 10 % of 50,000
    assert breach.status == BreachStatus.PROPOSED
    decided = breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.for_user(sla_manager))
    assert decided.status == BreachStatus.CONFIRMED and decided.decided_by == sla_manager
    entry = CreditEntry.objects.get(breach=breach)
    assert (entry.amount_usd, entry.pct, entry.tier, entry.month) == (Decimal("5000.00"), 10, 1, date(2026, 3, 1))
    assert AuditEvent.objects.filter(action="sla.credit_entry_created", subject_id=entry.pk).exists()
    with pytest.raises(IllegalTransition):
        breach_decide(breach_id=breach.pk, decision="dispute", actor=Actor.for_user(sla_manager), reason="late")


def test_no_tier_no_credit_line(carrier_a: Carrier, sla_manager: User) -> None:
    breach = _breach(_contract(carrier_a), good=995, total=1000)  # 99.5 %: above every threshold
    breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.for_user(sla_manager))
    assert not CreditEntry.objects.exists()


def test_credits_of_a_month_never_exceed_its_fee(carrier_a: Carrier, sla_manager: User) -> None:
    contract = _contract(carrier_a, fee="1000", tiers=[{"below_pct": 95, "credit_pct": 60}])
    first = _breach(contract, good=50, sli=SLIName.ON_TIME)
    second = _breach(contract, good=50, sli=SLIName.MISSION_SUCCESS)
    actor = Actor.for_user(sla_manager)
    breach_decide(breach_id=first.pk, decision="confirm", actor=actor)
    breach_decide(breach_id=second.pk, decision="confirm", actor=actor)
    amounts = list(CreditEntry.objects.order_by("id").values_list("amount_usd", flat=True))
    assert amounts == [Decimal("600.00"), Decimal("400.00")]


def test_only_sla_managers_decide(carrier_a: Carrier, dispatcher: User, readonly: User, admin_user: User) -> None:
    breach = _breach(_contract(carrier_a), good=80)
    for user in (dispatcher, readonly):
        with pytest.raises(PermissionDenied):
            breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.for_user(user))
    with pytest.raises(PermissionDenied):
        breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.system("robot"))
    with pytest.raises(DomainError):
        breach_decide(breach_id=breach.pk, decision="dispute", actor=Actor.for_user(admin_user), reason=" ")
    with pytest.raises(DomainError):
        breach_decide(breach_id=breach.pk, decision="approve", actor=Actor.for_user(admin_user))
    disputed = breach_decide(
        breach_id=breach.pk, decision="dispute", actor=Actor.for_user(admin_user), reason="Storm not excluded"
    )
    assert disputed.status == BreachStatus.DISPUTED and disputed.reason == "Storm not excluded"
    assert not CreditEntry.objects.exists()
    # Arbitration can still uphold a disputed breach.
    breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.for_user(admin_user))
    assert CreditEntry.objects.get().amount_usd == Decimal("12500.00")  # 80 % -> 25 %


def test_ledger_is_append_only(carrier_a: Carrier, sla_manager: User) -> None:
    breach = _breach(_contract(carrier_a), good=92)
    breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.for_user(sla_manager))
    entry = CreditEntry.objects.get()
    entry.amount_usd = Decimal("1")
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        CreditEntry.objects.filter(pk=entry.pk).update(amount_usd=0)
    with pytest.raises(PermissionError):
        CreditEntry.objects.all().delete()
    assert CreditEntry.objects.get().amount_usd == Decimal("5000.00")


def test_ledger_exports_csv_and_json(carrier_a: Carrier, carrier_b: Carrier, sla_manager: User) -> None:
    carrier_b.name = "=HYPERLINK(evil)"
    carrier_b.save()
    actor = Actor.for_user(sla_manager)
    breach_decide(breach_id=_breach(_contract(carrier_a), good=92).pk, decision="confirm", actor=actor)
    breach_decide(breach_id=_breach(_contract(carrier_b, fee="12345.67"), good=97).pk, decision="confirm", actor=actor)
    entries = ledger_entries()
    rows = list(csv.DictReader(io.StringIO(ledger_csv(entries))))
    assert tuple(rows[0]) == LEDGER_COLUMNS
    assert [(r["carrier"], r["month"], r["amount_usd"], r["pct"]) for r in rows] == [
        ("Carrier A", "2026-03", "5000.00", "10.00"),
        ("'=HYPERLINK(evil)", "2026-03", "617.28", "5.00"),  # 12345.67 x 5 % = 617.2835
    ]
    data = json.loads(ledger_json(ledger_entries(carrier_id=carrier_a.pk)))
    assert data["columns"] == list(LEDGER_COLUMNS)
    assert [e["amount_usd"] for e in data["entries"]] == ["5000.00"]
    assert data["entries"][0]["sli"] == SLIName.ON_TIME


def test_breach_evidence_names_the_failing_missions_and_refresh_stops_after_decision(
    carrier_a: Carrier, sla_manager: User
) -> None:
    contract = _contract(carrier_a)
    with time_machine.travel(T0, tick=False):
        late = [
            mission(carrier_a, completed_at=T0 - timedelta(days=2, minutes=k), due=T0 - timedelta(days=3))
            for k in range(3)
        ]
        mission(carrier_a, completed_at=T0 - timedelta(days=1), due=T0)
        result = on_time_rate(carrier_a.pk, T0.replace(day=1, hour=0), T0)
        breach = breach_record(
            carrier_id=carrier_a.pk, contract_id=contract.pk, result=result, target=Decimal("95"),
            actor=Actor.system("test"),
        )  # fmt: skip
    assert breach.measured == Decimal("25.0000") and breach.attainment_pct == Decimal("25.0000")
    assert sorted(breach.evidence["records"]["failing_mission_ids"]) == sorted(m.pk for m in late)
    assert breach.evidence["sli"]["good"] == 1 and breach.evidence["sli"]["total"] == 4
    assert "telemetry_snapshot_ids" in breach.evidence["records"]
    breach_decide(breach_id=breach.pk, decision="confirm", actor=Actor.for_user(sla_manager))
    # A later evaluation does not rewrite a decided breach.
    again = breach_record(
        carrier_id=carrier_a.pk, contract_id=contract.pk, result=result, target=Decimal("50"), actor=Actor.system("t")
    )
    assert again.pk == breach.pk and again.target == Decimal("95")


def test_closing_a_month_proposes_breaches_once(carrier_a: Carrier, settings: object) -> None:
    _contract(carrier_a)
    with time_machine.travel(T0, tick=False):
        for k in range(12):
            mission(carrier_a, status=MissionStatus.FAILED, completed_at=T0 - timedelta(days=3, minutes=k))
    first_of_april = T0.replace(month=4, day=1, hour=0, minute=5)
    with time_machine.travel(first_of_april, tick=False):
        evaluation = sla_evaluate(carrier_id=carrier_a.pk, now=first_of_april)
        assert {b.sli for b in evaluation.breaches} == {SLIName.ON_TIME, SLIName.MISSION_SUCCESS}
        # The next minute's evaluation sees the month closed and does not judge it again.
        assert sla_evaluate(carrier_id=carrier_a.pk, now=first_of_april + timedelta(minutes=1)).breaches == []
    assert Breach.objects.filter(period_start=date(2026, 3, 1)).count() == 2
    # Calling the close explicitly is idempotent: the proposed breaches are refreshed, not duplicated.
    sla_month_close(carrier_id=carrier_a.pk, month=date(2026, 3, 1), now=first_of_april)
    assert Breach.objects.count() == 2
