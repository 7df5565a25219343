"""Which domain events the evidence log attests, declared with the event registry.

Each rule names the event action that causes an attestation kind (the causing
event's id is the attestation's idempotency key, so a retried delivery finds
the attestation it already made). Attesting runs in a worker after the change
commits; a failure to attest never undoes the change and is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from missions.choices import MissionStatus
from missions.evidence.selectors import KIND_ACTIONS
from missions.evidence.services import attestation_for_event, carrier_signature_current
from missions.models import AuditEvent
from missions.models.evidence import AttestationKind
from missions.subscriptions import event_subscribe

OUTCOMES = frozenset({MissionStatus.COMPLETED, MissionStatus.FAILED})


def _status_in(statuses: frozenset[str]) -> Callable[[AuditEvent], bool]:
    return lambda event: (event.after or {}).get("status") in statuses


# The causing actions are ``KIND_ACTIONS``; of those events, these kinds attest only some.
CONDITIONS: dict[str, Callable[[AuditEvent], bool]] = {
    AttestationKind.MISSION_OUTCOME: _status_in(OUTCOMES),
    AttestationKind.INCIDENT_REVIEW: _status_in(frozenset({"closed"})),
}


def _attester(kind: str) -> Callable[[AuditEvent, dict[str, Any] | None], None]:
    def attest(event: AuditEvent, context: dict[str, Any] | None) -> None:
        attestation_for_event(
            kind=kind,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            event_id=event.pk,
            carrier_signature=context,
        )

    attest.__name__ = f"attest_{kind.replace('-', '_')}"
    return attest


_handlers = {kind: _attester(kind) for kind in KIND_ACTIONS}


def register() -> None:
    for kind, actions in KIND_ACTIONS.items():
        event_subscribe(
            name=f"evidence.attest.{kind}",
            actions=actions,
            handler=_handlers[kind],
            via="task",
            when=CONDITIONS.get(kind),
            capture=carrier_signature_current,
        )
