"""Celery tasks for tendering: ids in, services called, nothing else.

Every task is safe to run twice (acks_late redelivers after a worker dies):
the services re-check the tender's status under a row lock, and the carrier
dedupes submits and cancels on the tender's Idempotency-Key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task, shared_task

from missions.models import Tender
from missions.tendering import carrier_client, dispatch, polling, reconcile
from missions.tendering.carrier_client import CarrierBusy
from tms_console import tracing
from tms_console.logging import correlation_id_var


@contextmanager
def _in_tender_context(tender_id: int, step: str) -> Iterator[None]:
    """The tender's correlation id and trace around the task's work.

    The message headers usually carry both already; a task enqueued from beat,
    the outbox or a shell gets them from the tender itself.
    """
    found = Tender.objects.filter(pk=tender_id).values("correlation_id", "traceparent", "shipment_id").first()
    row: dict[str, Any] = dict(found) if found else {}
    token = None
    if correlation_id_var.get() is None and row.get("correlation_id") is not None:
        token = correlation_id_var.set(str(row["correlation_id"]))
    try:
        with tracing.span_from(
            f"tender {step}",
            row.get("traceparent"),
            tender_id=tender_id,
            shipment_id=row.get("shipment_id"),
            correlation_id=row.get("correlation_id"),
        ):
            yield
    finally:
        # An eager task runs in its caller's context: leave no id behind for the caller's next work.
        if token is not None:
            correlation_id_var.reset(token)


# A full bulkhead is back-pressure, not a carrier failure: wait and try again.
BUSY_RETRIES = 10
BUSY_RETRY_SECONDS = 2


@shared_task(name="missions.tender_send", bind=True, max_retries=BUSY_RETRIES)
def tender_send(self: Task[Any, Any], tender_id: int) -> str:
    last_try = self.request.retries >= BUSY_RETRIES or bool(self.request.is_eager)
    try:
        with _in_tender_context(tender_id, "send"):
            return dispatch.tender_deliver(tender_id=tender_id, give_up_when_busy=last_try)
    except CarrierBusy as exc:
        raise self.retry(exc=exc, countdown=BUSY_RETRY_SECONDS) from exc


@shared_task(name="missions.tender_poll_status")
def tender_poll_status(tender_id: int) -> str:
    with _in_tender_context(tender_id, "status poll"):
        return polling.tender_status_sync(tender_id=tender_id)


@shared_task(name="missions.tender_cancel_remote")
def tender_cancel_remote(tender_id: int) -> str:
    with _in_tender_context(tender_id, "remote cancel"):
        return dispatch.tender_remote_cancel(tender_id=tender_id)


@shared_task(name="missions.tenders_expire")
def tenders_expire() -> int:
    return dispatch.tenders_expire()


@shared_task(name="missions.tenders_poll_sent")
def tenders_poll_sent() -> int:
    """Poll push carriers for answers to SENT tenders (backs up async answers that never arrived).

    A tender stops being polled once it is answered, closed (lost, given up, withdrawn) or expired;
    one whose answers broke the contract waits out its back-off (``polling.tenders_due_for_poll``).
    """
    count = 0
    for tender_id in polling.tenders_due_for_poll():
        tender_poll_status.delay(tender_id)
        count += 1
    return count


@shared_task(name="missions.tenders_reconcile")
def tenders_reconcile() -> int:
    """Ask carriers about the tenders whose submit may have reached them although it failed here."""
    count = 0
    for tender_id in reconcile.tenders_in_doubt():
        with _in_tender_context(tender_id, "reconcile"):
            reconcile.tender_reconcile(tender_id=tender_id)
        count += 1
    return count


@shared_task(name="missions.circuits_probe")
def circuits_probe() -> int:
    return carrier_client.circuits_probe()
