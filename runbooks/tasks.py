"""Celery tasks for incidents and runbooks: ids in, services called, nothing else."""

from __future__ import annotations

from celery import shared_task

from runbooks import engine, pager, services


@shared_task(acks_late=True)
def incident_from_exception_task(exception_id: int) -> None:
    services.incident_from_exception(exception_id=exception_id)


@shared_task(acks_late=True)
def runbook_advance_task(run_id: int) -> None:
    wait = engine.runbook_advance(run_id=run_id)
    if wait:
        engine.runbook_schedule(run_id=run_id, countdown=wait)


@shared_task
def runbooks_tick() -> int:
    """Pick up runs whose waits or leases ran out (also the recovery path after a worker crash)."""
    due = engine.runs_due()
    for run_id in due:
        engine.runbook_advance(run_id=run_id)
    return len(due)


@shared_task(acks_late=True)
def page_deliver_task(message_id: int) -> None:
    pager.page_deliver(message_id=message_id)
