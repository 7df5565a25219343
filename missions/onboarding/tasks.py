"""Onboarding's scheduled work: the compliance watch (beat, hourly; it acts once a day per document)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from missions.onboarding.compliance import compliance_watch as watch


@shared_task(name="missions.onboarding.compliance_watch")
def compliance_watch() -> dict[str, Any]:
    return watch().as_dict()


@shared_task(name="missions.onboarding.certification_run", acks_late=True, reject_on_worker_lost=True)
def certification_run(run_id: int) -> str:
    """Run or resume a certification run; a worker lost mid-run hands it to another, which resumes."""
    from missions.onboarding.certification import certification_run as run

    return run(run_id).status
