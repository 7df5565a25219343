"""Celery tasks for incidents and runbooks: ids in, services called, nothing else."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from runbooks import engine, pager
from tms_console import simclock


def runbook_schedule(*, run_id: int, countdown: float = 0) -> None:
    """Queue the next advance of a run (now, or when its wait is over)."""
    if countdown and (settings.CELERY_TASK_ALWAYS_EAGER or simclock.active()):
        # Eager mode cannot delay, and a broker's countdown is real time, not a simulated clock's:
        # the periodic tick picks the run up when it is due.
        return
    runbook_advance_task.apply_async((run_id,), countdown=countdown)


@shared_task(acks_late=True)
def runbook_advance_task(run_id: int) -> None:
    wait = engine.runbook_advance(run_id=run_id)
    if wait:
        runbook_schedule(run_id=run_id, countdown=wait)


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
