"""Celery tasks for evidence: ids in, services called, nothing else.

Attestations are made by the event registry's delivery task (``missions.evidence.subscribers``).
``checkpoint`` runs from beat every
``EVIDENCE_CHECKPOINT_SECONDS`` and signs a new checkpoint only when the log grew.
"""

from __future__ import annotations

from celery import shared_task

from missions.evidence import services


@shared_task(name="missions.evidence.checkpoint", ignore_result=True)
def checkpoint() -> int | None:
    issued = services.checkpoint_issue()
    return issued.tree_size if issued else None
