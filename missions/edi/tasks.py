"""Celery tasks for EDI: ids in, services called, nothing else."""

from __future__ import annotations

from celery import shared_task

from missions.edi import services


@shared_task(name="missions.edi.folder_poll")
def folder_poll() -> int:
    """Read the files carriers dropped in their inbound folders (beat, every EDI_POLL_SECONDS)."""
    return services.folder_poll()
