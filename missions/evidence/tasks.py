"""Celery tasks for evidence: ids in, services called, nothing else.

``attest`` is safe to run twice (acks_late redelivers after a worker dies): the attestation
is unique per (kind, subject, causing event). ``checkpoint`` runs from beat every
``EVIDENCE_CHECKPOINT_SECONDS`` and signs a new checkpoint only when the log grew.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError

from missions.evidence import services


# A database hiccup (a lock timeout, a lost race on the unique key) is retried; the retry finds
# the attestation if the first attempt committed after all.
@shared_task(
    name="missions.evidence.attest",
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=5,
)
def attest(
    kind: str,
    subject_type: str,
    subject_id: int,
    event_id: int | None = None,
    carrier_signature: dict[str, Any] | None = None,
) -> int | None:
    attestation = services.attestation_for_event(
        kind=kind,
        subject_type=subject_type,
        subject_id=subject_id,
        event_id=event_id,
        carrier_signature=carrier_signature,
    )
    return attestation.log_index if attestation else None


@shared_task(name="missions.evidence.checkpoint", ignore_result=True)
def checkpoint() -> int | None:
    issued = services.checkpoint_issue()
    return issued.tree_size if issued else None
