"""Celery tasks of the telemetry pipeline (scheduled by beat; see the telemetry block in settings).

Gap detection itself runs on a thread of the beat process (``gap_detector_start``), not
through the broker: a check sent as a task waits for a free worker thread, and at fleet
scale the worker's threads can all be busy for tens of seconds (the SLA rollup, the runbook
tick). ``gaps_check`` stays a task for a manual run and for ``TELEMETRY_GAP_DETECTOR_IN_BEAT=0``,
where beat schedules it instead (docs/decisions/0010-telemetry-ingest.md).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import shared_task, signals
from django.conf import settings

from missions.telemetry.gaps import gap_detector_loop, telemetry_gaps_check
from missions.telemetry.partitions import partitions_ensure as _partitions_ensure
from missions.telemetry.retention import telemetry_purge, telemetry_window_prune


@shared_task(name="missions.telemetry.gaps_check", ignore_result=True)
def gaps_check() -> int:
    return telemetry_gaps_check()


@shared_task(name="missions.telemetry.window_prune", ignore_result=True)
def window_prune() -> int:
    return telemetry_window_prune()


@shared_task(name="missions.telemetry.purge", ignore_result=True)
def purge(days: int | None = None) -> dict[str, Any]:
    return telemetry_purge(days=days)


@shared_task(name="missions.telemetry.partitions_ensure", ignore_result=True)
def partitions_ensure() -> int:
    """PostgreSQL: create the telemetry partitions ahead (nothing to do on plain tables)."""
    return _partitions_ensure()


log = logging.getLogger(__name__)


@signals.beat_init.connect
def gap_detector_start(**_: Any) -> threading.Thread | None:
    """Start the gap detector on its own thread of the beat process (one beat: one detector)."""
    period = float(settings.TELEMETRY_GAP_CHECK_SECONDS)
    if not settings.TELEMETRY_GAP_DETECTOR_IN_BEAT or period <= 0:
        return None
    thread = threading.Thread(
        target=gap_detector_loop,
        kwargs={"stop": threading.Event(), "period": period},
        name="gap-detector",
        daemon=True,
    )
    thread.start()
    log.info("gap detector started", extra={"event": "gaps.detector_started", "period_seconds": period})
    return thread
