"""The safety ticker: the safety loops never pause silently when beat, the broker or the worker is down.

Gap detection and runbook steps normally run from Celery beat through the broker
to a worker. Each web process runs this ticker on a thread. Every
``SAFETY_TICK_SECONDS`` it reads the beat and worker heartbeats
(``tms_console.health``); while both are fresh it does nothing. When one is
stale (older than ``SAFETY_STALE_SECONDS``), the process that holds the
``safety-ticker`` lease in the database (only one at a time, whatever the
number of web processes):

1. opens a "monitoring degraded" incident (once: incidents dedupe on kind and
   title) and pages it directly over HTTP, without the broker;
2. runs gap detection itself, with worker subscribers run in-process, so every
   vehicle that falls silent during the outage gets its lost-comms incident
   (each once: a gap is keyed on the mission and its last-seen time);
3. advances the runbook runs that are due, and retries failed event deliveries.

When the heartbeats are fresh again, the ticker resolves the monitoring
incident with a note; beat's own gap check then finds nothing new to raise,
since the gaps raised meanwhile are recorded.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from missions.events import Actor
from missions.subscriptions import deliveries_retry, tasks_inline
from missions.telemetry.gaps import telemetry_gaps_check
from runbooks import engine, pager
from runbooks.choices import IncidentKind, IncidentSeverity, IncidentStatus
from runbooks.models import Incident
from runbooks.services import incident_note_add, incident_open, incident_transition
from runbooks.transitions import INCIDENT_OPEN
from tms_console.health import lease_acquire, pipeline_state

log = logging.getLogger(__name__)

LEASE = "safety-ticker"
TITLE = "Monitoring degraded: the web process is running the safety loops"
WATCHDOG = Actor.system("safety-ticker")


@dataclass
class TickReport:
    """What one tick saw and did (for the log and the tests)."""

    pipeline: dict[str, str]
    degraded: bool = False
    holder: bool = False
    gaps_raised: int = 0
    runs_advanced: int = 0
    deliveries_retried: int = 0
    incident_id: int | None = None
    recovered: list[int] = field(default_factory=list)


def _degraded_incident(pipeline: dict[str, str]) -> Incident:
    down = ", ".join(f"{name} {state}" for name, state in sorted(pipeline.items()) if state != "ok")
    incident, created = incident_open(
        actor=WATCHDOG,
        kind=IncidentKind.MONITORING_DEGRADED,
        severity=IncidentSeverity.CRITICAL,
        title=TITLE,
        summary=(
            f"Celery heartbeats are not fresh ({down}). Gap detection and runbook steps run in the web "
            "process until beat and the worker are back; check the broker (Redis), beat and the workers."
        ),
        data={"pipeline": pipeline},
    )
    if created:
        # Paged directly: the usual path (a worker task) is what is down.
        message = pager.page_enqueue(incident_id=incident.pk, event_action="trigger", actor=WATCHDOG)
        if message is not None:
            pager.page_deliver(message_id=message.pk, attempts=1)
    return incident


def _recover() -> list[int]:
    """Resolve the open monitoring incidents once beat and the worker are seen again."""
    resolved = []
    for incident in Incident.objects.filter(kind=IncidentKind.MONITORING_DEGRADED, status__in=INCIDENT_OPEN):
        incident_note_add(incident_id=incident.pk, actor=WATCHDOG, text="Beat and worker heartbeats are fresh again.")
        incident_transition(incident_id=incident.pk, to_status=IncidentStatus.RESOLVED, actor=WATCHDOG)
        resolved.append(incident.pk)
    return resolved


def safety_tick(*, holder: str, now: datetime | None = None) -> TickReport:
    """One look at the heartbeats and, while degraded and holding the lease, one round of the safety loops."""
    now = now or timezone.now()
    report = TickReport(pipeline=pipeline_state(now=now))
    report.degraded = any(state != "ok" for state in report.pipeline.values())
    if not report.degraded:
        report.recovered = _recover()
        return report
    report.holder = lease_acquire(name=LEASE, holder=holder, seconds=float(settings.SAFETY_TICK_SECONDS) * 3)
    if not report.holder:
        return report  # another web process runs the loops
    report.incident_id = _degraded_incident(report.pipeline).pk
    with tasks_inline():
        report.gaps_raised = telemetry_gaps_check(now=now)
        for run_id in engine.runs_due():
            engine.runbook_advance(run_id=run_id)
            report.runs_advanced += 1
        report.deliveries_retried = deliveries_retry()
    return report


class SafetyTicker:
    """The thread that calls ``safety_tick``; started once per web process."""

    def __init__(self) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = timezone.now()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="safety-ticker", daemon=True)

    def _loop(self) -> None:
        period = float(settings.SAFETY_TICK_SECONDS)
        # Give beat and the worker time to report after a fresh start: no false alarm in the first minute.
        if self.stop.wait(float(settings.SAFETY_STALE_SECONDS)):
            return
        while not self.stop.wait(period):
            try:
                close_old_connections()
                report = safety_tick(holder=self.holder)
                if report.degraded and report.holder:
                    log.warning(
                        "safety loops running in the web process",
                        extra={
                            "event": "safety.degraded",
                            "pipeline": report.pipeline,
                            "gaps_raised": report.gaps_raised,
                            "runs_advanced": report.runs_advanced,
                        },
                    )
            except Exception:  # the database may be down as well: try again next tick
                log.exception("safety tick failed")
                connection.close()


_ticker: SafetyTicker | None = None
_ticker_lock = threading.Lock()


def safety_ticker_start() -> SafetyTicker | None:
    """Start this process's ticker (once); off when ``SAFETY_TICKER`` is false."""
    global _ticker
    if not settings.SAFETY_TICKER or float(settings.CELERY_HEARTBEAT_SECONDS or 0) <= 0:
        return None  # off, or no heartbeats to judge by
    with _ticker_lock:
        if _ticker is None:
            _ticker = SafetyTicker()
            _ticker.thread.start()
        return _ticker
