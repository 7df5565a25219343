"""Append-only event records: the audit trail, the timelines and the live-update outbox.

Every service calls ``event_record`` inside its transaction. After commit each
subscriber declared for the event's action runs (``missions.subscriptions``):
the layers above the core react to events this way, never by being called.
One of them is the live broadcast to the channel layer groups the event
concerns; with the in-process layer (no Redis) the web process relays new rows
from the table instead (``missions.live``), so work done in a worker still
reaches open pages.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, cast

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from missions.choices import ActorKind
from missions.models import AuditEvent, Carrier, Mission, Shipment
from missions.subscriptions import event_publish
from tms_console import tracing
from tms_console.auth_guard import SecurityEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who did something: a console user, a carrier (machine) or the system."""

    kind: str
    label: str
    user: User | None = None
    carrier_id: int | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser | AnonymousUser) -> Actor:
        if not user.is_authenticated:
            raise ValueError("An anonymous user cannot act.")
        return cls(kind=ActorKind.USER, label=user.get_username(), user=cast(User, user))

    @classmethod
    def for_carrier(cls, carrier: Carrier) -> Actor:
        return cls(kind=ActorKind.CARRIER, label=f"carrier:{carrier.slug}", carrier_id=carrier.pk)

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(kind=ActorKind.SYSTEM, label=what)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def event_record(
    *,
    actor: Actor,
    action: str,
    subject_type: str,
    subject_id: int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    correlation_id: uuid.UUID | str | None = None,
    shipment: Shipment | None = None,
    mission: Mission | None = None,
    carrier: Carrier | None = None,
    incident_id: int | None = None,
) -> AuditEvent:
    """Append one event; must run inside the transaction of the change it records."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_record must run inside the transaction of the change it records.")
    event = AuditEvent(
        occurred_at=timezone.now(),
        actor_kind=actor.kind,
        actor_user=actor.user,
        actor_label=actor.label[:150],
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=_jsonable(before),
        after=_jsonable(after),
        data=_jsonable(data or {}),
        correlation_id=correlation_id,
        traceparent=tracing.current_traceparent(),
        shipment=shipment,
        mission=mission,
        carrier=carrier,
        incident_id=incident_id,
    )
    event.save()
    event_publish(event)
    return event


def event_groups(event: AuditEvent) -> list[str]:
    """Channel-layer groups an event is delivered to."""
    groups = ["events.all"]
    if event.shipment_id:
        groups.append(f"shipment.{event.shipment_id}")
    if event.mission_id:
        groups.append(f"mission.{event.mission_id}")
    if event.carrier_id:
        groups.append(f"carrier.{event.carrier_id}")
    if event.incident_id:
        groups.append(f"incident.{event.incident_id}")
    if event.subject_type == "incident" or event.incident_id:
        groups.append("incidents")
    return groups


def event_message(event: AuditEvent) -> dict[str, Any]:
    """The JSON shape of an event on the live channels and in replay."""
    return {
        "id": event.pk,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor_label,
        "actor_kind": event.actor_kind,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "before": event.before,
        "after": event.after,
        "data": event.data,
        "correlation_id": str(event.correlation_id) if event.correlation_id else None,
        "shipment_id": event.shipment_id,
        "mission_id": event.mission_id,
        "carrier_id": event.carrier_id,
        "incident_id": event.incident_id,
    }


def replay_payload(event: AuditEvent) -> dict[str, Any]:
    """An event as partners and bus consumers see it: console internals (incident ids, user names) removed."""
    payload = event_message(event)
    payload.pop("incident_id", None)
    if payload.get("actor_kind") == "user":
        payload["actor"] = "console"
    return payload


def live_message(event: AuditEvent) -> dict[str, Any]:
    """The channel-layer message of an event; its trace travels beside it, not to the browser."""
    return {"type": "domain.event", "event": event_message(event), "traceparent": event.traceparent}


def event_broadcast(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    """Subscriber (inline, every action): push the event to its live groups."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_groups_send)(layer, event_groups(event), live_message(event))
    except Exception:  # a live update must never break the write that caused it
        log.exception("live broadcast failed", extra={"event_id": event.pk})


async def _groups_send(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    """Every group in one trip to an event loop (``async_to_sync`` costs a thread hop per call)."""
    for group in groups:
        await layer.group_send(group, message)


def layer_is_shared(_event: AuditEvent | None = None) -> bool:
    """True when a shared channel layer (Redis) carries live updates between processes."""
    return not _layer_is_in_process()


def _layer_is_in_process() -> bool:
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    return backend.endswith("InMemoryChannelLayer")


def security_event_audit(event: SecurityEvent) -> None:
    """Recorder for ``tms_console.auth_guard``: a failed credential that names a known user or client.

    Registered from ``MissionsConfig.ready``. Credentials naming nobody (an
    unknown token, user name or client id) stay in the security log only: an
    audit event needs a subject.
    """
    if event.subject_type is None or event.subject_id is None:
        return
    with transaction.atomic():
        event_record(
            actor=Actor.system("auth-guard"),
            action=f"security.{event.kind.value}_failed",
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            data={"client_address": event.address, "identity": event.identity[:150], "reason": event.reason},
            carrier=Carrier.objects.filter(pk=event.carrier_id).first() if event.carrier_id else None,
        )
