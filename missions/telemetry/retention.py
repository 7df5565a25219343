"""Retention: thin old samples, purge the oldest, prune the short-lived window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet, Value
from django.db.models.functions import Mod
from django.utils import timezone

from missions.models import TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent

DELETE_CHUNK = 10_000


def _delete_in_chunks(qs: QuerySet[Any]) -> int:
    # Deleting by id chunks keeps each transaction (and its locks) short on a large table.
    total = 0
    while True:
        ids = list(qs.values_list("pk", flat=True)[:DELETE_CHUNK])
        if not ids:
            return total
        with transaction.atomic():
            deleted, _ = qs.model._default_manager.filter(pk__in=ids).delete()
        total += deleted


def telemetry_purge(*, days: int | None = None) -> dict[str, int]:
    """Delete samples older than ``days`` (TELEMETRY_RETENTION_DAYS) and thin those past the thinning age.

    Thinning keeps one sample per vehicle every ``TELEMETRY_THIN_SECONDS``
    (those whose second is a multiple of it) once a sample is older than
    ``TELEMETRY_THIN_AFTER_DAYS``: enough for a track, a tenth of the rows.
    """
    now = timezone.now()
    days = settings.TELEMETRY_RETENTION_DAYS if days is None else days
    purged = _delete_in_chunks(TelemetrySample.objects.filter(recorded_at__lt=now - timedelta(days=days)))
    thinned = 0
    step = settings.TELEMETRY_THIN_SECONDS
    thin_after = settings.TELEMETRY_THIN_AFTER_DAYS
    if step > 1 and thin_after < days:
        cutoff_s = int((now - timedelta(days=thin_after)).timestamp())
        candidates = TelemetrySample.objects.filter(bucket_s__lt=cutoff_s).exclude(bucket_s__isnull=True)
        # MOD() exists on both backends (Django registers it on SQLite).
        thinned = _delete_in_chunks(candidates.annotate(rem=Mod("bucket_s", Value(step))).exclude(rem=0))
    return {"purged": purged, "thinned": thinned}


def telemetry_window_prune(*, now: datetime | None = None) -> int:
    """Drop window rows that arrived longer ago than the dedupe horizon."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.TELEMETRY_DEDUPE_SECONDS)
    return _delete_in_chunks(TelemetryWindowEvent.objects.filter(received_at__lt=horizon))
