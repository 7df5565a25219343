"""Domain-event subscriptions: how the layers above the core react to what it records.

The core never calls up. A service records what happened with ``event_record``;
apps built on the core (incidents and runbooks, the SLA engine, evidence, live
updates) declare in their ``AppConfig.ready`` which event actions they react to::

    event_subscribe(
        name="sla.evaluate_on_mission_finished",
        actions={"mission.status_changed"},
        handler=on_mission_finished,
        when=lambda event: (event.after or {}).get("status") in FINISHED,
    )

Delivery rules:

* A subscriber runs only after the publishing transaction commits, so it never
  sees a state that was rolled back, and it can never undo that write.
* ``via="task"`` runs the handler in a Celery worker (``acks_late``: a worker
  killed mid-handler hands it to another); ``via="inline"`` runs it in the
  committing process, for cheap reactions such as enqueueing.
* A ``via="task"`` delivery is owed from the moment the event commits: its
  ``EventDelivery`` row is written in the publishing transaction (an outbox
  row) and deleted when the handler succeeds, so a task the broker lost (a
  Redis without persistence that restarted, a queue purged) is still run,
  ``EVENT_TASK_GRACE_SECONDS`` later, by the retry below.
* A handler that raises, or a task that cannot be enqueued (broker down), leaves
  its ``EventDelivery`` row pending; ``deliveries_retry`` (beat, every
  ``EVENT_RETRY_SECONDS``, or the safety ticker while the broker is down) runs
  it again from the stored event with a growing back-off, up to
  ``EVENT_RETRY_ATTEMPTS``, then marks it dead for an operator.
  Handlers must therefore be idempotent (each one here is: attestations are
  unique per causing event, an exception opens at most one incident, an SLA
  evaluation is a recomputation).
* ``capture`` reads request-scoped context inside the publishing transaction
  (e.g. the carrier signature of the webhook that caused the change) and hands
  it to the handler as JSON.

Why not Django signals or direct calls: see docs/decisions/0013-domain-event-registry.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Literal

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from missions.models import AuditEvent, EventDelivery, EventDeliveryStatus
from tms_console import tracing

log = logging.getLogger(__name__)

ALL_ACTIONS = "*"

Context = dict[str, Any] | None
Handler = Callable[[AuditEvent, Context], None]
Predicate = Callable[[AuditEvent], bool]
Capture = Callable[[], Mapping[str, Any] | None]
Via = Literal["inline", "task"]


@dataclass(frozen=True)
class Subscriber:
    """One reaction to a set of event actions, declared by the app that owns it."""

    name: str
    actions: frozenset[str]
    handler: Handler
    via: Via = "task"
    when: Predicate | None = None
    capture: Capture | None = None
    retry: bool = True

    def wants(self, event: AuditEvent) -> bool:
        return self.when is None or self.when(event)


class SubscriptionError(RuntimeError):
    """A subscription that cannot be right (a name used twice, no actions)."""


_by_name: dict[str, Subscriber] = {}
_by_action: dict[str, list[Subscriber]] = {}


def event_subscribe(
    *,
    name: str,
    actions: Iterable[str],
    handler: Handler,
    via: Via = "task",
    when: Predicate | None = None,
    capture: Capture | None = None,
    retry: bool = True,
) -> Subscriber:
    """Declare a reaction to events (call from ``AppConfig.ready``). ``"*"`` stands for every action.

    Declaring the same name again with the same handler is a no-op (``ready`` may run
    twice in tests); with another handler it is an error.
    """
    wanted = frozenset(actions)
    if not wanted:
        raise SubscriptionError(f"Subscriber {name!r} names no event actions.")
    existing = _by_name.get(name)
    if existing is not None:
        if existing.handler is handler and existing.actions == wanted:
            return existing
        raise SubscriptionError(f"A subscriber named {name!r} is already registered.")
    subscriber = Subscriber(
        name=name, actions=wanted, handler=handler, via=via, when=when, capture=capture, retry=retry
    )
    _by_name[name] = subscriber
    for action in wanted:
        _by_action.setdefault(action, []).append(subscriber)
    return subscriber


def event_unsubscribe(name: str) -> None:
    """Remove a subscriber (tests that register a temporary one)."""
    subscriber = _by_name.pop(name, None)
    if subscriber is None:
        return
    for action in subscriber.actions:
        _by_action[action] = [s for s in _by_action.get(action, []) if s.name != name]


def subscribers() -> list[Subscriber]:
    """Every registered subscriber, by name."""
    return [_by_name[name] for name in sorted(_by_name)]


def subscribers_for(action: str) -> list[Subscriber]:
    return [*_by_action.get(action, ()), *_by_action.get(ALL_ACTIONS, ())]


def event_publish(event: AuditEvent) -> None:
    """Called by ``event_record`` inside the publishing transaction: schedule each subscriber after commit."""
    for subscriber in subscribers_for(event.action):
        if not subscriber.wants(event):
            continue
        captured = subscriber.capture() if subscriber.capture is not None else None
        context = dict(captured) if captured else None
        if subscriber.via == "task" and subscriber.retry:
            _owed(subscriber, event, context)
        # robust: one subscriber's failure to start never stops the others, nor the caller.
        transaction.on_commit(partial(_dispatch, subscriber, event, context), robust=True)


def _owed(subscriber: Subscriber, event: AuditEvent, context: Context) -> None:
    """The outbox row of a task delivery, in the publishing transaction (deleted when it succeeds)."""
    grace = timedelta(seconds=float(settings.EVENT_TASK_GRACE_SECONDS))
    with transaction.atomic():  # a savepoint: a duplicate (the same event published twice) changes nothing
        EventDelivery.objects.get_or_create(
            event_id=event.pk,
            subscriber=subscriber.name,
            defaults={"context": context, "next_attempt_at": timezone.now() + grace},
        )


def _settled(subscriber: Subscriber, event_id: int) -> None:
    if subscriber.via == "task" and subscriber.retry:
        EventDelivery.objects.filter(
            event_id=event_id, subscriber=subscriber.name, status=EventDeliveryStatus.PENDING
        ).delete()


# Set while the broker cannot be relied on (the safety ticker): worker subscribers run in-process.
_tasks_inline: contextvars.ContextVar[bool] = contextvars.ContextVar("subscriptions_tasks_inline", default=False)


@contextlib.contextmanager
def tasks_inline() -> Iterator[None]:
    """Within the block, ``via="task"`` subscribers run in this process instead of being enqueued."""
    token = _tasks_inline.set(True)
    try:
        yield
    finally:
        _tasks_inline.reset(token)


def _dispatch(subscriber: Subscriber, event: AuditEvent, context: Context) -> None:
    if subscriber.via == "inline" or _tasks_inline.get():
        _run(subscriber, event, context)
        return
    try:
        event_deliver.delay(event.pk, subscriber.name, context)
    except Exception as exc:  # broker down: the outbox row stays owed and says why
        _failed(subscriber, event.pk, context, exc)


def _run(subscriber: Subscriber, event: AuditEvent, context: Context) -> bool:
    try:
        subscriber.handler(event, context)
    except Exception as exc:
        _failed(subscriber, event.pk, context, exc)
        return False
    _settled(subscriber, event.pk)
    return True


def _backoff(attempts: int) -> timedelta:
    base = float(settings.EVENT_RETRY_SECONDS)
    return timedelta(seconds=min(base * (2 ** max(attempts - 1, 0)), 600.0))


def _failed(subscriber: Subscriber, event_id: int, context: Context, exc: BaseException) -> None:
    log.error(
        "event subscriber failed",
        exc_info=exc,
        extra={"event": "events.subscriber_failed", "subscriber": subscriber.name, "event_id": event_id},
    )
    tracing.record_error(exc)
    if not subscriber.retry:
        return
    now = timezone.now()
    error = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        with transaction.atomic():
            delivery, created = EventDelivery.objects.select_for_update().get_or_create(
                event_id=event_id,
                subscriber=subscriber.name,
                defaults={"context": context, "next_attempt_at": now + _backoff(1), "attempts": 1, "last_error": error},
            )
            if not created:
                delivery.attempts += 1
                delivery.last_error = error
                delivery.next_attempt_at = now + _backoff(delivery.attempts)
                if delivery.attempts >= settings.EVENT_RETRY_ATTEMPTS:
                    delivery.status = EventDeliveryStatus.DEAD
                    log.error(
                        "event subscriber gave up",
                        extra={"event": "events.subscriber_dead", "subscriber": subscriber.name, "event_id": event_id},
                    )
                delivery.save(update_fields=["attempts", "last_error", "next_attempt_at", "status", "updated_at"])
    except IntegrityError:
        pass  # a concurrent failure of the same delivery recorded it first
    except Exception:
        # The database itself is failing: nothing more can be kept; the log line above stands.
        log.exception("event delivery could not be recorded", extra={"subscriber": subscriber.name})


def event_deliver_now(*, event_id: int, subscriber_name: str, context: Context = None) -> bool:
    """Run one subscriber on one stored event; True when it succeeded (a failure is recorded for retry)."""
    subscriber = _by_name.get(subscriber_name)
    if subscriber is None:
        log.error("unknown event subscriber", extra={"subscriber": subscriber_name, "event_id": event_id})
        return False
    event = AuditEvent.objects.filter(pk=event_id).first()
    if event is None:
        return True  # nothing left to react to
    with _delivery_span(event, subscriber):
        return _run(subscriber, event, context)


def _delivery_span(event: AuditEvent, subscriber: Subscriber) -> contextlib.AbstractContextManager[Any]:
    """A worker's or a retry's delivery joins the trace the event was recorded in."""
    return tracing.span_from(f"event {event.action} -> {subscriber.name}", event.traceparent)


def deliveries_retry(*, limit: int = 200) -> int:
    """Run the deliveries that are due again; returns how many succeeded this time."""
    due = list(
        EventDelivery.objects.filter(status=EventDeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", "event_id", "subscriber", "context")[:limit]
    )
    succeeded = 0
    for pk, event_id, name, context in due:
        subscriber = _by_name.get(name)
        event = AuditEvent.objects.filter(pk=event_id).first()
        if subscriber is None or event is None:
            continue
        try:
            with _delivery_span(event, subscriber):
                subscriber.handler(event, context)
        except Exception as exc:
            _failed(subscriber, event_id, context, exc)
            continue
        EventDelivery.objects.filter(pk=pk).delete()
        succeeded += 1
    return succeeded


# The registry's own transport: generic tasks that take an event id and a subscriber name.
@shared_task(name="missions.events.deliver", acks_late=True, ignore_result=True)
def event_deliver(event_id: int, subscriber_name: str, context: Context = None) -> bool:
    return event_deliver_now(event_id=event_id, subscriber_name=subscriber_name, context=context)


@shared_task(name="missions.events.retry", ignore_result=True)
def event_deliveries_retry() -> int:
    return deliveries_retry()
