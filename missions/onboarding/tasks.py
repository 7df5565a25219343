"""Onboarding's scheduled work: the compliance watch (beat, hourly; it acts once a day per document)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from missions.onboarding.compliance import compliance_watch as watch


@shared_task(name="missions.onboarding.compliance_watch")
def compliance_watch() -> dict[str, Any]:
    return watch().as_dict()
