"""A finished mission re-evaluates its carrier at once, at most once per SLA_FINISH_EVALUATION_INTERVAL_SECONDS."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import time_machine

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission
from missions.services import mission_transition
from sla.choices import SLIName, WindowName
from sla.models import SLIMeasurement
from sla.tasks import sla_evaluate_all
from tests.factories import ContractFactory
from tests.sla.fixtures import T0, at, mission

pytestmark = pytest.mark.django_db(transaction=True)


def _en_route(carrier: Carrier) -> Mission:
    return mission(carrier, status=MissionStatus.EN_ROUTE, started_at=at(-120), due=at(hours=3))


def _finish(m: Mission) -> None:
    actor = Actor.for_carrier(m.carrier)
    mission_transition(mission_id=m.pk, to_status=MissionStatus.ARRIVING, actor=actor)
    mission_transition(mission_id=m.pk, to_status=MissionStatus.COMPLETED, actor=actor)


def _evaluations(carrier: Carrier) -> list[tuple[Any, int]]:
    """(computed_at, missions counted) of each stored evaluation, from its 1 h success measurement."""
    rows = SLIMeasurement.objects.filter(carrier=carrier, sli=SLIName.MISSION_SUCCESS, window=WindowName.H1)
    return list(rows.order_by("computed_at").values_list("computed_at", "total"))


def _instants(carrier: Carrier) -> list[Any]:
    return [computed_at for computed_at, _ in _evaluations(carrier)]


@pytest.fixture
def contracted(carrier_a: Carrier) -> Carrier:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    return carrier_a


def test_finishes_within_the_interval_share_one_evaluation_and_beat_counts_the_rest(
    contracted: Carrier, settings: Any
) -> None:
    settings.SLA_FINISH_EVALUATION_INTERVAL_SECONDS = 30
    first, second, third = _en_route(contracted), _en_route(contracted), _en_route(contracted)
    with time_machine.travel(T0, tick=False) as clock:
        _finish(first)
        assert _instants(contracted) == [T0]
        clock.shift(timedelta(seconds=10))
        _finish(second)  # evaluated 10 s ago: left to beat
        assert _instants(contracted) == [T0]
        clock.shift(timedelta(seconds=25))
        _finish(third)  # 35 s since the last evaluation: evaluated at once
        assert _instants(contracted) == [T0, T0 + timedelta(seconds=35)]
    # Windows end before their instant: each evaluation counts what finished before it.
    assert [total for _, total in _evaluations(contracted)] == [0, 2]


def test_beat_takes_in_a_finish_that_was_left_to_it(contracted: Carrier, settings: Any) -> None:
    settings.SLA_FINISH_EVALUATION_INTERVAL_SECONDS = 30
    first, second = _en_route(contracted), _en_route(contracted)
    with time_machine.travel(T0, tick=False) as clock:
        _finish(first)
        clock.shift(timedelta(seconds=5))
        _finish(second)
        assert _instants(contracted) == [T0]
        clock.shift(timedelta(seconds=55))
        sla_evaluate_all()
    assert _evaluations(contracted)[-1] == (T0 + timedelta(seconds=60), 2)


def test_an_interval_of_zero_evaluates_every_finish(contracted: Carrier, settings: Any) -> None:
    settings.SLA_FINISH_EVALUATION_INTERVAL_SECONDS = 0
    first, second = _en_route(contracted), _en_route(contracted)
    with time_machine.travel(T0, tick=False):
        _finish(first)
        _finish(second)
    assert _instants(contracted) == [T0, T0]


def test_an_evaluation_stamped_after_now_does_not_stand_for_one(contracted: Carrier, settings: Any) -> None:
    """A clock set back (a test's, a simulation's) must not leave the carrier unevaluated."""
    settings.SLA_FINISH_EVALUATION_INTERVAL_SECONDS = 30
    first, second = _en_route(contracted), _en_route(contracted)
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        _finish(first)
    with time_machine.travel(T0, tick=False):
        _finish(second)
    assert _instants(contracted) == [T0, T0 + timedelta(minutes=5)]
