"""Celery tasks of the telemetry pipeline (scheduled by beat; see the telemetry block in settings)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from missions.telemetry.gaps import telemetry_gaps_check
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
