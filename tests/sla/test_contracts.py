"""Contract validation: overlapping versions, targets out of range, bad exclusions, credit schedules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from missions.events import Actor
from missions.models import Carrier
from sla.models import Contract, credit_schedule_validate, credit_tier_for
from sla.services import contract_create, contract_exclusion_add
from tests.factories import ContractFactory
from tests.sla.fixtures import at

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")


def test_overlapping_effective_periods_are_refused(carrier_a: Carrier, carrier_b: Carrier) -> None:
    contract_create(
        actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2026, 1, 1), effective_to=date(2026, 7, 1)
    )
    with pytest.raises(ValidationError) as err:
        contract_create(actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2026, 6, 1))
    assert "Overlaps" in str(err.value.message_dict["effective_from"])
    # Back to back (effective_to is exclusive) is fine, and so is another carrier on the same dates.
    v2 = contract_create(actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2026, 7, 1))
    assert v2.version == 2
    contract_create(actor=SYSTEM, carrier_id=carrier_b.pk, effective_from=date(2026, 6, 1))
    # An open-ended contract overlaps anything after it.
    with pytest.raises(ValidationError):
        contract_create(actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2027, 1, 1))


def test_contract_must_end_after_it_starts(carrier_a: Carrier) -> None:
    with pytest.raises(ValidationError) as err:
        contract_create(
            actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2026, 5, 1), effective_to=date(2026, 5, 1)
        )
    assert "effective_to" in err.value.message_dict


@pytest.mark.parametrize("field", ["on_time_target_pct", "mission_success_target_pct", "api_error_rate_target_pct"])
@pytest.mark.parametrize("value", [Decimal("-0.01"), Decimal("100.01"), Decimal("250")])
def test_targets_out_of_range_are_refused(carrier_a: Carrier, field: str, value: Decimal) -> None:
    with pytest.raises(ValidationError) as err:
        contract_create(actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2026, 1, 1), **{field: value})
    assert field in err.value.message_dict


def test_database_refuses_targets_out_of_range_too(carrier_a: Carrier) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Contract.objects.create(carrier=carrier_a, effective_from=date(2026, 1, 1), on_time_target_pct=Decimal("101"))


def test_exclusion_that_ends_before_it_starts_is_refused(carrier_a: Carrier) -> None:
    contract = ContractFactory(carrier=carrier_a)
    with pytest.raises(ValidationError) as err:
        contract_exclusion_add(
            actor=SYSTEM, contract_id=contract.pk, kind="maintenance", reason="Depot works",
            starts_at=at(60), ends_at=at(0),
        )  # fmt: skip
    assert "ends_at" in err.value.message_dict
    with pytest.raises(ValidationError) as err:
        contract_exclusion_add(
            actor=SYSTEM, contract_id=contract.pk, kind="force_majeure", reason="  ", starts_at=at(0), ends_at=at(60)
        )
    assert "reason" in err.value.message_dict
    ok = contract_exclusion_add(
        actor=SYSTEM, contract_id=contract.pk, kind="maintenance", reason="Depot works", starts_at=at(0), ends_at=at(60)
    )
    assert ok.pk is not None


GOOD_SCHEDULE = [
    {"below_pct": 99, "credit_pct": 5},
    {"below_pct": 95, "credit_pct": 10},
    {"below_pct": 90, "credit_pct": 25},
]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("not a list", "Use a list"),
        ([{"below_pct": 95}], "Tier 1"),
        ([{"below_pct": 95, "credit_pct": 5, "extra": 1}], "unknown keys"),
        ([{"below_pct": 95, "credit_pct": 101}], "between 0 and 100"),
        ([{"below_pct": 120, "credit_pct": 5}], "between 0 and 100"),
        ([{"below_pct": 0, "credit_pct": 5}], "above 0"),
        ([{"below_pct": "abc", "credit_pct": 5}], "must be a number"),
        ([{"below_pct": True, "credit_pct": 5}], "must be a number"),
        # Not strictly ordered: ascending, or two equal thresholds.
        ([{"below_pct": 90, "credit_pct": 10}, {"below_pct": 95, "credit_pct": 5}], "strictly decreasing"),
        ([{"below_pct": 95, "credit_pct": 5}, {"below_pct": 95, "credit_pct": 10}], "strictly decreasing"),
        # Gap: 85-90 covered by no tier.
        ([{"below_pct": 95, "from_pct": 90, "credit_pct": 5}, {"below_pct": 85, "credit_pct": 10}], "Gap"),
        # Gap at the bottom: the last tier stops at 50.
        ([{"below_pct": 95, "credit_pct": 5}, {"below_pct": 90, "from_pct": 50, "credit_pct": 10}], "Gap"),
        # Overlap: the first tier reaches below the second's threshold.
        ([{"below_pct": 95, "from_pct": 80, "credit_pct": 5}, {"below_pct": 90, "credit_pct": 10}], "Overlap"),
        ([{"below_pct": 95, "from_pct": 96, "credit_pct": 5}], "from_pct must be below"),
        # Worse service earning less credit.
        ([{"below_pct": 95, "credit_pct": 10}, {"below_pct": 90, "credit_pct": 5}], "cannot earn less"),
    ],
)
def test_bad_credit_schedules_are_refused(carrier_a: Carrier, schedule: Any, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        credit_schedule_validate(schedule)
    assert message in " ".join(err.value.messages)
    with pytest.raises(ValidationError) as err2:
        contract_create(
            actor=SYSTEM, carrier_id=carrier_a.pk, effective_from=date(2026, 1, 1), credit_schedule=schedule
        )
    assert "credit_schedule" in err2.value.message_dict


def test_schedule_bands_are_contiguous_half_open_and_explicit_bounds_may_match() -> None:
    tiers = credit_schedule_validate(GOOD_SCHEDULE)
    assert [(t.from_pct, t.below_pct) for t in tiers] == [(95, 99), (90, 95), (0, 90)]
    explicit = credit_schedule_validate(
        [{"below_pct": 99, "from_pct": 95, "credit_pct": 5}, {"below_pct": 95, "from_pct": 0, "credit_pct": 10}]
    )
    assert [(t.from_pct, t.below_pct) for t in explicit] == [(95, 99), (0, 95)]
    assert credit_schedule_validate([]) == []

    def pct(attainment: str) -> Decimal | None:
        tier = credit_tier_for(tiers, Decimal(attainment))
        return None if tier is None else tier.credit_pct

    assert pct("100") is None
    assert pct("99") is None  # at the threshold: not below it
    assert pct("98.9999") == 5
    assert pct("95") == 5
    assert pct("94.9999") == 10
    assert pct("90") == 10
    assert pct("89.99") == 25
    assert pct("0") == 25
