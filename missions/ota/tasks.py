"""Celery task of the OTA capability (scheduled by beat every ``OTA_REFRESH_SECONDS``)."""

from __future__ import annotations

from celery import shared_task

from missions.ota.services import ota_refresh_all


@shared_task(name="missions.ota.refresh_all", ignore_result=True)
def refresh_all() -> dict[str, int]:
    return ota_refresh_all()
