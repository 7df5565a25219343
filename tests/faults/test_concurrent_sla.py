"""Three SLA evaluations of one carrier at once leave exactly one open alert per (carrier, SLI, severity)."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction

from missions.choices import MissionStatus
from missions.models import Carrier
from runbooks.models import Incident
from sla.choices import AlertSeverity, SLIName
from sla.models import BurnRateAlert
from sla.services import sla_evaluate
from tests.factories import ContractFactory
from tests.sla.fixtures import T0, at, mission

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.shared_database]


def burning(carrier: Carrier) -> None:
    ContractFactory(
        carrier=carrier,
        effective_from=date(2026, 1, 1),
        mission_success_target_pct=Decimal("98"),
        on_time_target_pct=Decimal("95"),
    )
    for k in range(12):
        mission(carrier, status=MissionStatus.FAILED, completed_at=at(-4) + timedelta(seconds=k))


def test_three_concurrent_evaluations_open_each_alert_once(carrier_a: Carrier, settings: Any) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    burning(carrier_a)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            start.wait(timeout=10)
            sla_evaluate(carrier_id=carrier_a.pk, now=T0)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=evaluate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    open_alerts = list(
        BurnRateAlert.objects.filter(carrier=carrier_a, resolved_at__isnull=True).values_list("sli", "severity")
    )
    assert sorted(open_alerts) == sorted(
        [
            (SLIName.ON_TIME, AlertSeverity.PAGE),
            (SLIName.ON_TIME, AlertSeverity.TICKET),
            (SLIName.MISSION_SUCCESS, AlertSeverity.PAGE),
            (SLIName.MISSION_SUCCESS, AlertSeverity.TICKET),
        ]
    )
    # One page each: one incident per paging SLI, each alert linked to it.
    pages = BurnRateAlert.objects.filter(carrier=carrier_a, severity=AlertSeverity.PAGE)
    assert Incident.objects.filter(kind="sla_breach", carrier=carrier_a).count() == 1  # joined by dedupe key
    assert all(alert.incident_id is not None for alert in pages)


def test_the_database_refuses_a_second_open_alert(carrier_a: Carrier) -> None:
    """The constraint holds even for a writer that skips the service's lock."""
    fields: dict[str, Any] = {
        "carrier": carrier_a,
        "sli": SLIName.ON_TIME,
        "severity": AlertSeverity.PAGE,
        "long_window_seconds": 3600,
        "short_window_seconds": 300,
        "threshold": Decimal("14.4"),
        "long_burn_rate": Decimal("20"),
        "short_burn_rate": Decimal("20"),
        "long_total": 12,
        "long_good": 0,
        "fired_at": T0,
    }
    BurnRateAlert.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        BurnRateAlert.objects.create(**fields)
    BurnRateAlert.objects.filter(carrier=carrier_a).update(resolved_at=T0)
    BurnRateAlert.objects.create(**fields)  # a new one may open once the first is resolved
    assert BurnRateAlert.objects.filter(carrier=carrier_a, resolved_at__isnull=True).count() == 1
    assert connection.vendor in ("postgresql", "sqlite")
