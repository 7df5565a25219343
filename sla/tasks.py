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
    if evaluation.rebuild_requested:
        sla_rebuild_carrier.delay(carrier_id)
    return len(evaluation.measurements)


@shared_task(name="sla.rollup", ignore_result=True)
def sla_rollup() -> int:
    """Beat, every few seconds: apply new rows to the SLA buckets (evaluations also catch up first)."""
    from sla import rollups

    return sum(rollups.rollup_run(max_seconds=20).values())


@shared_task(name="sla.rebuild_carrier", ignore_result=True)
def sla_rebuild_carrier(carrier_id: int) -> int:
    """Rebuild one carrier's buckets (its contract's gap or latency target changed); missions recomputed."""
    from sla import rollups

    return rollups.carrier_rebuild(carrier_id)


@shared_task(name="sla.recount_daily", ignore_result=True)
def sla_recount_daily() -> int:
    """Beat, daily: recount every carrier from raw rows; an incident (and a rebuild) on drift."""
    from sla.recount import drift_check_all

    return len(drift_check_all())
