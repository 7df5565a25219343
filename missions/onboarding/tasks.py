"""Onboarding's scheduled and background work: the compliance watch and certification runs."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from missions.onboarding import certification, compliance, drift, golive


@shared_task(name="missions.onboarding.compliance_watch")
def compliance_watch() -> dict[str, Any]:
    """Hourly (beat); each warning and pause happens once. Onboarding carriers' stated reasons catch up too
    (with an SLA contract signed meanwhile, say)."""
    result = compliance.compliance_watch().as_dict()
    result["onboarding_refreshed"] = golive.onboarding_reasons_refresh()
    return result


@shared_task(name="missions.onboarding.certification_run", acks_late=True, reject_on_worker_lost=True)
def certification_run(run_id: int) -> str:
    """Run or resume a certification run; a worker lost mid-run hands it to another, which resumes."""
    run = certification.certification_run(run_id)
    golive.onboarding_reason_refresh(run.carrier_id)
    return str(run.status)


@shared_task(name="missions.onboarding.drift_watch")
def drift_watch() -> dict[str, int]:
    result = drift.drift_watch()
    return {"checked": result.checked, "drifted": result.drifted, "paused": result.paused, "cleared": result.cleared}
