"""Tendering's reactions to its own events: calls owed to a carrier are enqueued after commit.

``dispatch`` records ``tender.queued`` / ``tender.remote_cancel_queued`` in the
transaction that decided the call; the worker tasks run it. Dispatch never
imports its tasks, so the tasks can use dispatch freely.
"""

from __future__ import annotations

from typing import Any

from missions.models import AuditEvent
from missions.subscriptions import event_subscribe
from missions.tendering import tasks
from tms_console.logging import correlation_id_var


def tender_send_enqueue(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    token = correlation_id_var.set(str(event.correlation_id) if event.correlation_id else None)
    try:
        tasks.tender_send.delay(event.subject_id)
    finally:
        correlation_id_var.reset(token)


def tender_cancel_remote_enqueue(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    token = correlation_id_var.set(str(event.correlation_id) if event.correlation_id else None)
    try:
        tasks.tender_cancel_remote.delay(event.subject_id)
    finally:
        correlation_id_var.reset(token)


def register() -> None:
    event_subscribe(name="tendering.send", actions={"tender.queued"}, handler=tender_send_enqueue, via="inline")
    event_subscribe(
        name="tendering.cancel_remote",
        actions={"tender.remote_cancel_queued"},
        handler=tender_cancel_remote_enqueue,
        via="inline",
    )
