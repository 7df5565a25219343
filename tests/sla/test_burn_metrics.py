"""What /metrics exports for the Prometheus SLO rules: the engine's own counts, objectives and minimum traffic."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from missions.choices import CircuitState, MissionStatus
from missions.models import Carrier, CarrierCircuit
from sla.choices import SLIName
from sla.models import BurnWindowCount
from sla.services import BURN_SLIS, burn_windows, sla_evaluate
from tests.factories import ContractFactory
from tests.sla.fixtures import mission

pytestmark = pytest.mark.django_db


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body = Client().get("/metrics").content.decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name
    }


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_burn_counts_are_the_evaluations_own(carrier_a: Carrier, settings: Any) -> None:
    settings.SLA_BURN_MIN_EVENTS = 7
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1), api_error_rate_target_pct=Decimal("2.5"))
    now = timezone.now()
    for k in range(3):
        mission(carrier_a, completed_at=now - timedelta(minutes=2, seconds=k), due=now + timedelta(hours=1))
    mission(carrier_a, status=MissionStatus.FAILED, completed_at=now - timedelta(minutes=20))
    evaluation = sla_evaluate(carrier_id=carrier_a.pk, now=now)

    good, total = samples("tms_sla_burn_good_events"), samples("tms_sla_burn_events")
    assert len(total) == len(BURN_SLIS) * len(burn_windows())
    for sli in BURN_SLIS:
        for window in burn_windows():
            result = evaluation.results[(sli, window)]
            assert total[key(carrier="carrier-a", sli=sli, window=window)] == result.total
            assert good[key(carrier="carrier-a", sli=sli, window=window)] == result.good
    # 5 min: the three missions on time; 1 h: the failed one too.
    assert total[key(carrier="carrier-a", sli=SLIName.MISSION_SUCCESS, window="5m")] == 3
    assert total[key(carrier="carrier-a", sli=SLIName.MISSION_SUCCESS, window="1h")] == 4
    assert good[key(carrier="carrier-a", sli=SLIName.MISSION_SUCCESS, window="1h")] == 3

    objective = samples("tms_sla_objective_good_ratio")
    assert objective[key(carrier="carrier-a", sli=SLIName.API_ERROR_RATE)] == pytest.approx(0.975)
    assert objective[key(carrier="carrier-a", sli=SLIName.API_LATENCY)] == pytest.approx(0.99)
    assert objective[key(carrier="carrier-a", sli=SLIName.MISSION_SUCCESS)] == pytest.approx(0.98)
    assert key(carrier="carrier-a", sli=SLIName.MTTR) not in objective  # no burn-rate alert for a mean
    assert samples("tms_sla_burn_min_events") == {(): 7.0}
    assert samples("tms_sla_evaluated_timestamp_seconds") == {key(carrier="carrier-a"): now.timestamp()}


def test_a_new_evaluation_overwrites_the_counts(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    now = timezone.now()
    mission(carrier_a, completed_at=now - timedelta(minutes=2))
    sla_evaluate(carrier_id=carrier_a.pk, now=now)
    sla_evaluate(carrier_id=carrier_a.pk, now=now + timedelta(minutes=10))
    assert BurnWindowCount.objects.count() == len(BURN_SLIS) * len(burn_windows())
    row = BurnWindowCount.objects.get(carrier=carrier_a, sli=SLIName.MISSION_SUCCESS, window="5m")
    assert (row.total, row.computed_at) == (0, now + timedelta(minutes=10))  # the mission left the 5 min window


def test_no_contract_no_objective(carrier_a: Carrier) -> None:
    mission(carrier_a, status=MissionStatus.FAILED, completed_at=timezone.now() - timedelta(minutes=2))
    sla_evaluate(carrier_id=carrier_a.pk)
    assert samples("tms_sla_burn_events")[key(carrier="carrier-a", sli=SLIName.MISSION_SUCCESS, window="5m")] == 1
    assert samples("tms_sla_objective_good_ratio") == {}


def test_breaker_state_and_gap_detection_lag(carrier_a: Carrier, carrier_b: Carrier) -> None:
    CarrierCircuit.objects.create(carrier=carrier_a, state=CircuitState.OPEN, opened_at=timezone.now())
    CarrierCircuit.objects.create(carrier=carrier_b, state=CircuitState.CLOSED)
    assert samples("tms_carrier_circuit_state") == {
        key(carrier="carrier-a", state="open"): 1.0,
        key(carrier="carrier-b", state="closed"): 1.0,
    }
    assert samples("tms_telemetry_gap_detection_lag_seconds") == {(): 0.0}
    # A truck silent for 200 s against the default 60 s threshold, never raised: 140 s late.
    silent = mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=timezone.now() - timedelta(hours=1))
    silent.last_seen_at = timezone.now() - timedelta(seconds=200)
    silent.save(update_fields=["last_seen_at"])
    lag = samples("tms_telemetry_gap_detection_lag_seconds")[()]
    assert 139 <= lag <= 150
