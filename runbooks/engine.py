"""Runbook runs: start, advance automated steps, and on-call's step actions.

These are the services for ``RunbookRun`` and ``StepRun``. ``runbook_advance``
is safe to call from any number of workers at once and after a crash: a step
is claimed under a row lock with a lease, its action is idempotent, and its
result is written under the lock again, so a step's effect happens once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from missions.events import Actor
from runbooks.actions import ACTIONS, Outcome
from runbooks.choices import IncidentStatus, RunStatus, StepKind, StepStatus
from runbooks.models import Incident, Runbook, RunbookRun, RunbookStep, StepRun
from runbooks.records import incident_event
from tms_console import tracing
from tms_console.domain import Conflict, DomainError

log = logging.getLogger(__name__)
UNFINISHED = (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING, StepStatus.FAILED)


def runbook_for(kind: str) -> Runbook | None:
    return Runbook.objects.filter(incident_kind=kind, is_active=True).order_by("-version").first()


@transaction.atomic
def runbook_start(*, incident_id: int, actor: Actor) -> RunbookRun | None:
    """Attach the active runbook for the incident's kind and queue its first step (once)."""
    incident = (
        Incident.objects.select_for_update(of=("self",))
        .select_related("mission__shipment", "carrier")
        .get(pk=incident_id)
    )
    existing = RunbookRun.objects.filter(incident=incident).first()
    if existing is not None:
        return existing
    runbook = runbook_for(incident.kind)
    if runbook is None:
        return None
    run = RunbookRun.objects.create(incident=incident, runbook=runbook)
    StepRun.objects.bulk_create([StepRun(run=run, step=step) for step in runbook.steps.order_by("position")])
    incident_event(
        incident,
        actor=actor,
        action="runbook.started",
        data={"runbook": runbook.slug, "version": runbook.version, "run_id": run.pk},
    )
    return run


def _condition_holds(step: RunbookStep, context: dict[str, Any]) -> bool:
    when = (step.params or {}).get("when")
    if when == "not_recovered":
        return context.get("recovered") is False
    if when == "no_fallback":
        return bool(context.get("no_fallback"))
    return True


def _step_event(step_run: StepRun, incident: Incident, *, actor: Actor, action: str, **data: Any) -> None:
    incident_event(
        incident,
        actor=actor,
        action=action,
        data={"step": step_run.step.position, "title": step_run.step.title, "run_id": step_run.run_id, **data},
        after={"status": step_run.status},
    )


def runbook_advance(*, run_id: int, max_steps: int = 20) -> float | None:
    """Run automated steps in order until a manual step, a wait or the end.

    Returns seconds until the run should be looked at again, or None.
    """
    for _ in range(max_steps):
        claim = _claim_next(run_id=run_id)
        if claim is None or isinstance(claim, float):
            return claim
        step_run_id, action_name = claim
        step_run = StepRun.objects.select_related("step", "run__incident__mission", "run__incident__carrier").get(
            pk=step_run_id
        )
        incident = step_run.run.incident
        try:
            with (
                lease_heartbeat(step_run_id=step_run_id),
                tracing.span_from(
                    f"runbook step: {action_name}",
                    incident.traceparent,
                    incident_id=incident.pk,
                    mission_id=incident.mission_id,
                ),
            ):
                outcome = ACTIONS[action_name](incident, step_run.run, step_run.step)
        except (DomainError, Exception) as exc:  # an action error is recorded, never lost
            log.exception("runbook action failed", extra={"run_id": run_id, "step": action_name})
            outcome = Outcome.failed(f"{type(exc).__name__}: {exc}"[:300])
        wait = _finish(step_run_id=step_run_id, outcome=outcome)
        if wait is not None:
            return wait
    return 0.0


def lease_renew(*, step_run_id: int) -> bool:
    """Push a running step's lease forward; False when the step is no longer ours to run."""
    until = timezone.now() + timedelta(seconds=settings.RUNBOOK_STEP_LEASE_SECONDS)
    return bool(StepRun.objects.filter(pk=step_run_id, status=StepStatus.RUNNING).update(lease_until=until))


@contextlib.contextmanager
def lease_heartbeat(*, step_run_id: int) -> Iterator[None]:
    """Renew the step's lease every third of it while the action runs.

    The lease is short (``RUNBOOK_STEP_LEASE_SECONDS``) so that a worker killed mid-step
    costs the run at most about one lease before the tick hands the step to another
    worker; a live worker on a slow action (a carrier call with retries) keeps it.
    """
    stop = threading.Event()
    interval = max(0.5, settings.RUNBOOK_STEP_LEASE_SECONDS / 3)

    def beat() -> None:
        try:
            while not stop.wait(interval):
                if not lease_renew(step_run_id=step_run_id):
                    return
        except Exception:  # a missed renewal only risks a second worker re-running an idempotent action
            log.warning("runbook lease renewal failed", exc_info=True, extra={"step_run_id": step_run_id})
        finally:
            connection.close()  # this thread's own database connection

    thread = threading.Thread(target=beat, name=f"runbook-lease-{step_run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


@transaction.atomic
def _claim_next(*, run_id: int) -> tuple[int, str] | float | None:
    run = RunbookRun.objects.select_for_update().select_related("incident").get(pk=run_id)
    if run.status != RunStatus.RUNNING:
        return None
    now = timezone.now()
    for step_run in run.step_runs.select_for_update().select_related("step").order_by("step__position"):
        if step_run.status in (StepStatus.DONE, StepStatus.SKIPPED):
            continue
        step = step_run.step
        if step_run.status == StepStatus.PENDING and not _condition_holds(step, run.context):
            step_run.status, step_run.reason, step_run.finished_at = StepStatus.SKIPPED, "condition not met", now
            step_run.save(update_fields=["status", "reason", "finished_at"])
            _step_event(
                step_run,
                run.incident,
                actor=Actor.system("runbook"),
                action="runbook.step_skipped",
                reason="condition not met",
            )
            continue
        if step.kind == StepKind.MANUAL:
            if step_run.status == StepStatus.PENDING:
                step_run.status = StepStatus.WAITING
                step_run.save(update_fields=["status"])
                _step_event(step_run, run.incident, actor=Actor.system("runbook"), action="runbook.step_waiting")
            return None  # on-call confirms it from the console
        if step_run.status == StepStatus.FAILED:
            return None  # on-call retries or skips it
        if step_run.status == StepStatus.RUNNING and step_run.lease_until and step_run.lease_until > now:
            return (step_run.lease_until - now).total_seconds()  # another worker holds it
        if (
            step_run.status in (StepStatus.WAITING, StepStatus.PENDING)
            and step_run.wait_until
            and step_run.wait_until > now
        ):
            return (step_run.wait_until - now).total_seconds()
        first_claim = step_run.started_at is None
        step_run.status = StepStatus.RUNNING
        step_run.attempts += 1
        step_run.lease_until = now + timedelta(seconds=settings.RUNBOOK_STEP_LEASE_SECONDS)
        step_run.started_at = step_run.started_at or now
        step_run.save(update_fields=["status", "attempts", "lease_until", "started_at"])
        if first_claim:
            _step_event(step_run, run.incident, actor=Actor.system("runbook"), action="runbook.step_started")
        return step_run.pk, step.action
    run.status, run.finished_at = RunStatus.COMPLETED, now
    run.save(update_fields=["status", "finished_at"])
    incident_event(run.incident, actor=Actor.system("runbook"), action="runbook.completed")
    return None


@transaction.atomic
def _finish(*, step_run_id: int, outcome: Outcome) -> float | None:
    # The run's row first, then the step's: the order _claim_next takes them in, so a tick claiming the
    # same run and a worker finishing its step wait for each other instead of deadlocking.
    run_id = StepRun.objects.values_list("run_id", flat=True).get(pk=step_run_id)
    run = RunbookRun.objects.select_for_update().get(pk=run_id)
    step_run = StepRun.objects.select_for_update().select_related("step", "run__incident").get(pk=step_run_id)
    if step_run.status != StepStatus.RUNNING:
        return None  # finished by someone else (skipped by on-call meanwhile)
    now = timezone.now()
    incident = step_run.run.incident
    if outcome.context:
        run.context = {**run.context, **outcome.context}
        run.save(update_fields=["context"])
    step_run.result = {**step_run.result, **outcome.result}
    step_run.lease_until = None
    if outcome.state == "done":
        step_run.status, step_run.finished_at, step_run.wait_until = StepStatus.DONE, now, None
        step_run.save()
        _step_event(
            step_run, incident, actor=Actor.system("runbook"), action="runbook.step_done", result=outcome.result
        )
        return None
    if outcome.state == "wait":
        step_run.status = StepStatus.WAITING
        step_run.wait_until = now + timedelta(seconds=outcome.wait_seconds)
        step_run.attempts = max(0, step_run.attempts - 1)  # waiting is not a failed attempt
        step_run.save()
        return outcome.wait_seconds
    if step_run.attempts < step_run.step.max_attempts:
        backoff = min(60.0, 2.0**step_run.attempts)
        step_run.status, step_run.wait_until = StepStatus.PENDING, now + timedelta(seconds=backoff)
        step_run.save()
        _step_event(
            step_run,
            incident,
            actor=Actor.system("runbook"),
            action="runbook.step_retrying",
            error=outcome.result.get("error"),
            attempt=step_run.attempts,
        )
        return backoff
    step_run.status, step_run.finished_at = StepStatus.FAILED, now
    step_run.save()
    _step_event(
        step_run,
        incident,
        actor=Actor.system("runbook"),
        action="runbook.step_failed",
        error=outcome.result.get("error"),
        attempts=step_run.attempts,
    )
    return None


# --- On-call actions ------------------------------------------------------------


def _step_for_update(*, step_run_id: int) -> StepRun:
    return (
        StepRun.objects.select_for_update(of=("self",))
        .select_related("step", "run__incident__mission", "run__incident__carrier")
        .get(pk=step_run_id)
    )


@transaction.atomic
def step_confirm(*, step_run_id: int, actor: Actor, note: str = "") -> StepRun:
    """On-call confirms a manual checklist step. A second confirmation is refused."""
    step_run = _step_for_update(step_run_id=step_run_id)
    if step_run.step.kind != StepKind.MANUAL:
        raise DomainError("Automated steps are run, not confirmed.")
    if step_run.status in (StepStatus.DONE, StepStatus.SKIPPED):
        raise Conflict(f"Step {step_run.step.position} is already {step_run.status}.")
    _require_open_run(step_run)
    step_run.status, step_run.finished_at = StepStatus.DONE, timezone.now()
    step_run.actor_label, step_run.reason = actor.label, note[:300]
    step_run.save()
    _step_event(step_run, step_run.run.incident, actor=actor, action="runbook.step_confirmed", note=note)
    return step_run


@transaction.atomic
def step_skip(*, step_run_id: int, actor: Actor, reason: str) -> StepRun:
    if not reason.strip():
        raise DomainError("Skipping a step needs a reason.", field="reason")
    step_run = _step_for_update(step_run_id=step_run_id)
    if step_run.status in (StepStatus.DONE, StepStatus.SKIPPED):
        raise Conflict(f"Step {step_run.step.position} is already {step_run.status}.")
    _require_open_run(step_run)
    step_run.status, step_run.finished_at, step_run.lease_until = StepStatus.SKIPPED, timezone.now(), None
    step_run.actor_label, step_run.reason = actor.label, reason.strip()[:300]
    step_run.save()
    _step_event(step_run, step_run.run.incident, actor=actor, action="runbook.step_skipped", reason=reason)
    return step_run


@transaction.atomic
def step_retry(*, step_run_id: int, actor: Actor) -> StepRun:
    """Run a failed (or waiting) automated step again now."""
    step_run = _step_for_update(step_run_id=step_run_id)
    if step_run.step.kind != StepKind.AUTOMATED:
        raise DomainError("Only automated steps can be run or retried.")
    if step_run.status not in (StepStatus.FAILED, StepStatus.WAITING, StepStatus.PENDING):
        raise Conflict(f"Step {step_run.step.position} is {step_run.status}; it cannot be retried now.")
    _require_open_run(step_run)
    step_run.status, step_run.wait_until, step_run.finished_at = StepStatus.PENDING, None, None
    step_run.attempts = 0
    step_run.save()
    _step_event(step_run, step_run.run.incident, actor=actor, action="runbook.step_retry_requested")
    return step_run


def _require_open_run(step_run: StepRun) -> None:
    if step_run.run.status != RunStatus.RUNNING:
        raise Conflict("This runbook run is finished.")
    if step_run.run.incident.status == IncidentStatus.CLOSED:
        raise Conflict("The incident is closed.")


def runs_due() -> list[int]:
    """Runs with an automated step whose wait or lease has run out (the periodic tick's work)."""
    now = timezone.now()
    due = (
        Q(status__in=[StepStatus.WAITING, StepStatus.PENDING], wait_until__lte=now)
        | Q(status=StepStatus.PENDING, wait_until__isnull=True)
        | Q(status=StepStatus.RUNNING, lease_until__lte=now)
    )
    return list(
        StepRun.objects.filter(due, run__status=RunStatus.RUNNING, step__kind=StepKind.AUTOMATED)
        .values_list("run_id", flat=True)
        .distinct()
    )
