"""Celery tasks of the SLA engine: ids in, services called, nothing else."""

from __future__ import annotations

from celery import shared_task

from missions.models import Carrier
from sla import services


@shared_task(name="sla.evaluate_all", ignore_result=True)
def sla_evaluate_all() -> int:
    """Beat, every minute: fan out one evaluation per carrier that has a contract."""
    carrier_ids = list(Carrier.objects.filter(contracts__isnull=False).distinct().values_list("id", flat=True))
    for carrier_id in carrier_ids:
        sla_evaluate_carrier.delay(carrier_id)
    return len(carrier_ids)


@shared_task(name="sla.evaluate_carrier", ignore_result=True)
def sla_evaluate_carrier(carrier_id: int) -> int:
    evaluation = services.sla_evaluate(carrier_id=carrier_id)
    return len(evaluation.measurements)
