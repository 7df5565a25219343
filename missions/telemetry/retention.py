"""Retention: thin old samples, purge the oldest, prune the short-lived window.

On PostgreSQL with partitioned tables (docs/decisions/0028-telemetry-partitions.md)
whole partitions are dropped and a day of samples is thinned by rewriting it;
only rows in the DEFAULT partition are deleted one chunk at a time. Elsewhere
(SQLite, a database not converted) rows are deleted in chunks.
"""

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
from missions.telemetry import partitions

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
    With partitions, both go by whole UTC days: a day is dropped (or thinned)
    once all of it is past the age, so a sample goes between ``days`` and
    ``days`` + 1 after it was recorded.
    """
    now = timezone.now()
    days = settings.TELEMETRY_RETENTION_DAYS if days is None else days
    if partitions.is_partitioned(partitions.SAMPLES):
        return _purge_partitions(now, days)
    purged = _delete_in_chunks(TelemetrySample.objects.filter(recorded_at__lt=now - timedelta(days=days)))
    thinned = 0
    step = settings.TELEMETRY_THIN_SECONDS
    thin_after = settings.TELEMETRY_THIN_AFTER_DAYS
    if step > 1 and thin_after < days:
        cutoff_s = int((now - timedelta(days=thin_after)).timestamp())
        candidates = TelemetrySample.objects.filter(bucket_s__lt=cutoff_s).exclude(bucket_s__isnull=True)
        # MOD() exists on both backends (Django registers it on SQLite).
        thinned = _delete_in_chunks(candidates.annotate(rem=Mod("bucket_s", Value(step))).exclude(rem=0))
    return {"purged": purged, "thinned": thinned, "partitions_dropped": 0, "partitions_thinned": 0}


def _purge_partitions(now: datetime, days: int) -> dict[str, int]:
    table = partitions.SAMPLES
    cutoff = now - timedelta(days=days)
    dropped = partitions.drop_before(table, cutoff)
    purged = partitions.default_delete(table, "recorded_at < %s", [cutoff])
    step = settings.TELEMETRY_THIN_SECONDS
    thin_after = settings.TELEMETRY_THIN_AFTER_DAYS
    thinned_partitions = thinned = 0
    if step > 1 and thin_after < days:
        thin_cutoff = now - timedelta(days=thin_after)
        thinned_partitions, thinned = partitions.thin_before(table, thin_cutoff, step)
        thinned += partitions.default_delete(
            table, "bucket_s < %s AND bucket_s %% %s <> 0", [int(thin_cutoff.timestamp()), step]
        )
    return {
        "purged": purged,
        "thinned": thinned,
        "partitions_dropped": len(dropped),
        "partitions_thinned": thinned_partitions,
    }


def telemetry_window_prune(*, now: datetime | None = None) -> int:
    """Drop window rows that arrived longer ago than the dedupe horizon.

    With partitions an hour of the window goes as a whole once it ended more
    than the horizon plus ``partitions.WINDOW_LATE_MARGIN`` ago: an event up to
    that late keeps its dedupe record at least the horizon after arrival.
    Later events have no hour of their own and land in the DEFAULT partition,
    whose rows go by arrival as before. Returns the rows deleted one by one
    (those of the DEFAULT partition).
    """
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.TELEMETRY_DEDUPE_SECONDS)
    if partitions.is_partitioned(partitions.WINDOW):
        partitions.drop_before(partitions.WINDOW, horizon - partitions.WINDOW_LATE_MARGIN)
        return partitions.default_delete(partitions.WINDOW, "received_at < %s", [horizon])
    return _delete_in_chunks(TelemetryWindowEvent.objects.filter(received_at__lt=horizon))
