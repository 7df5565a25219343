"""One run: the world, the simulated clock, the fleet, the beat's periodic work, the checkpoints.

The loop is discrete-event: the next instant is the earliest of the next sample step, gap check,
runbook tick, SLA evaluation, telemetry housekeeping, day end and on-call task; the clock jumps there and everything due
runs in a fixed order (fleet, gap detection, runbooks, on-call, SLA). Celery tasks run eagerly in
this process, or in a worker process of the run's own (``workers.py``); either way each service's
subscribers (incidents, runbooks, SLA re-evaluations, evidence) and beat's work run at the simulated
instant that caused them, before the clock moves on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection
from django.test import override_settings

from missions.events import Actor
from missions.simulation import compare, truth
from missions.simulation.carrier_api import CarrierApi, windows_draw
from missions.simulation.clock import sim_clock
from missions.simulation.fleet import Fleet, product_incident
from missions.simulation.mqtt_uplink import PartnerMqtt
from missions.simulation.profile import Profile
from missions.simulation.record import Record
from missions.simulation.transport import TRANSPORTS, InProcess, PartnerHttp, Transport
from missions.simulation.workers import Tasks, tasks_for
from missions.simulation.world import world_build
from missions.simulation.ws_uplink import PartnerWs
from missions.telemetry.tasks import gaps_check, partitions_ensure, purge, window_prune
from missions.tendering.tasks import circuits_probe, tenders_reconcile
from runbooks.choices import IncidentStatus
from runbooks.tasks import runbooks_tick
from sla.choices import BreachStatus
from sla.models import Breach
from sla.services import breach_decide
from sla.tasks import sla_evaluate_all, sla_rollup

Progress = Callable[[dict[str, Any]], None]


@dataclass
class RunResult:
    record: Record
    comparison: compare.Comparison
    wall_seconds: float
    profile: Profile
    seed: int
    trucks: int
    days: int
    events: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    transport: dict[str, Any] = field(default_factory=dict)


def default_start(days: int) -> datetime:
    """A start that makes the run end one day into February 2026, so January closes during the run
    (month close, breaches and credits) whatever its length."""
    return datetime(2026, 2, 2, tzinfo=UTC) - timedelta(days=days)


def run_program(
    *,
    days: float,
    trucks: int,
    seed: int,
    profile: Profile,
    start: datetime | None = None,
    prefix: str = "sim",
    progress: Progress | None = None,
    transport: str = "inprocess",
    out: Path | None = None,
    tasks: str = "eager",
) -> RunResult:
    """Drive the product through the run and compare its SLA figures with the fleet's record."""
    start = start or default_start(int(days))
    end = start + timedelta(days=days)
    wall_start = time.monotonic()
    rng = random.Random(seed)
    eager = tasks == "eager"
    previous_eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = eager  # the worker's tasks run here, in simulated time
    try:
        with (
            override_settings(
                CELERY_TASK_ALWAYS_EAGER=eager,
                PAGERDUTY_EVENTS_URL="",
                PAGERDUTY_ROUTING_KEY="",
                SLA_FINISH_EVALUATION_INTERVAL_SECONDS=profile.finish_evaluation_seconds,
            ),  # fmt: skip
            sim_clock(start) as clock,
        ):
            world = world_build(prefix=prefix, profile=profile, trucks=trucks, start=start)
            record = Record(start=start, end=end, gap_seconds=profile.gap_seconds)
            record.carriers = {slug: c.pk for slug, c in world.carriers.items()}
            record.carriers[world.fallback.slug] = world.fallback.pk
            api = _carrier_api(profile, world, record, seed)
            runner = tasks_for(tasks, out=out, start=start, run=world.prefix)
            try:
                sender = _transport(transport, world, out, start, runner.child_env())
                try:
                    fleet = Fleet(world=world, profile=profile, record=record, rng=rng, transport=sender, api=api)
                    events = _loop(clock, runner, fleet, record, profile, end, progress, wall_start)
                finally:
                    sender.close()
            finally:
                runner.close()
                if api is not None:
                    api.close()
            sent = {**sender.stats(), "tasks": runner.stats()}
            _incidents_reconcile(record, profile)
            comparison = compare.compare_run(record, profile)
    finally:
        current_app.conf.task_always_eager = previous_eager
    return RunResult(
        record=record, comparison=comparison, wall_seconds=time.monotonic() - wall_start, profile=profile,
        seed=seed, trucks=trucks, days=int(days), events=events, transport=sent,
    )  # fmt: skip


def _carrier_api(profile: Profile, world: Any, record: Record, seed: int) -> CarrierApi | None:
    """The first autonomous carrier's API, behind the run's fault proxy, with the run's fault windows."""
    if not profile.carrier_api:
        return None
    windows = windows_draw(profile, record.start, record.end, random.Random(f"{seed}:carrier-api"))
    api = CarrierApi(profile=profile, windows=windows, seed=seed)
    api.attach(next(iter(world.carriers.values())))
    record.api_carrier = api.slug
    record.api_windows = [w.as_dict() for w in windows]
    return api


def _transport(name: str, world: Any, out: Path | None, start: datetime, env: dict[str, str]) -> Transport:
    if name == "inprocess":
        return InProcess()
    if name not in TRANSPORTS:
        raise ValueError(f"Unknown transport '{name}'; choose one of {', '.join(TRANSPORTS)}.")
    if out is None:
        raise ValueError(f"the {name} transport needs a directory for its clock file and server logs")
    carriers = [*world.carriers.values(), world.fallback]
    if name == "mqtt":
        return PartnerMqtt(carriers=carriers, out=out, start=start, run=world.prefix, url=settings.MQTT_URL, env=env)
    return (PartnerWs if name == "ws" else PartnerHttp)(carriers=carriers, out=out, start=start, env=env)


def _loop(
    clock: Any,
    tasks: Tasks,
    fleet: Fleet,
    record: Record,
    profile: Profile,
    end: datetime,
    progress: Progress | None,
    wall: float,
) -> int:
    vacuum = _needs_vacuum()
    step = timedelta(seconds=profile.sample_seconds)
    gap_every = timedelta(seconds=profile.gap_check_seconds)
    eval_every = timedelta(seconds=profile.sla_evaluate_seconds)
    house_every = timedelta(seconds=profile.housekeeping_seconds)
    start = record.start
    next_sample, next_gap, next_tick, next_house = start, start + gap_every, start, start
    next_eval, next_day = start + eval_every, start + timedelta(days=1)
    events = 0
    api = fleet.api
    while True:
        candidates = [next_sample, next_gap, next_tick, next_eval, next_day, next_house]
        if fleet.oncall:
            candidates.append(fleet.oncall[0].due)
        switch = api.next_switch(clock.now) if api is not None else None
        if switch is not None:
            candidates.append(switch)
        now = min(candidates)
        if now > end:
            break
        tasks.settle()  # everything the last instant caused has run at that instant
        fleet.api_observe(clock.now)  # the calls it made, before the carrier API's faults move on
        clock.advance_to(now)
        tasks.clock_to(now)
        if api is not None:
            api.apply(now)
        if now == next_house:
            # Beat's telemetry housekeeping: day partitions ahead, the dedupe window pruned, retention.
            tasks.beat_work(partitions_ensure)
            tasks.beat_work(window_prune)
            tasks.beat_work(purge)
            next_house += house_every
        if now == next_sample:
            before = record.samples_sent + record.duplicates_sent
            fleet.step(now)
            events += record.samples_sent + record.duplicates_sent - before
            next_sample += step
        if now == next_gap:
            tasks.beat_work(gaps_check)
            if api is not None:
                # Beat's tendering housekeeping: the half-open probe, tenders of unknown fate asked again.
                tasks.beat_work(circuits_probe)
                tasks.beat_work(tenders_reconcile)
            next_gap += gap_every
        if now == next_tick:
            tasks.beat_work(runbooks_tick)
            tasks.settle()  # the fleet reads what the runbooks did
            fleet.watch_failovers(now)
            next_tick = fleet.next_runbook_tick(now)
        fleet.oncall_due(now)
        if now == next_day:
            # The program's checkpoint: every carrier evaluated at midnight, whatever beat's cadence.
            tasks.run(sla_rollup)
            tasks.run(sla_evaluate_all)
        elif now == next_eval:
            tasks.beat_work(sla_rollup)
            tasks.beat_work(sla_evaluate_all)
        if now == next_eval:
            next_eval += eval_every
        if now == next_day:
            tasks.settle()  # the SLA manager reads the month close's proposed breaches
            record.checkpoints.append(now)
            _breaches_confirm(fleet, record, now)
            if vacuum:
                _vacuum()
            next_day += timedelta(days=1)
            if progress is not None:
                wall_seconds = round(time.monotonic() - wall, 1)
                progress({"sim_day": len(record.checkpoints), "sim_time": now.isoformat(), "events": events,
                          "missions": len(record.missions), "wall_seconds": wall_seconds})  # fmt: skip
    tasks.settle()
    fleet.api_observe(clock.now)
    if not record.checkpoints or record.checkpoints[-1] != clock.now:
        tasks.run(sla_rollup)
        tasks.run(sla_evaluate_all)
        tasks.settle()
        fleet.api_observe(clock.now)
        record.checkpoints.append(clock.now)
    return events


def _needs_vacuum() -> bool:
    """A PostgreSQL server with autovacuum off: a simulated day updates every mission's row every minute, and
    without vacuum its dead rows slow every later day (the gap check's index scan, 20 ms instead of 1 ms
    after two weeks of 200 trucks). With autovacuum on, its one-minute naptime keeps up with the run."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        row = cursor.fetchone()
    return bool(row) and str(row[0]).lower() == "off"


def _vacuum() -> None:
    """What autovacuum would have done to the run's database, at each simulated midnight (outside a transaction)."""
    if connection.in_atomic_block:
        return  # VACUUM cannot run in a transaction (a caller's test case, say)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def _breaches_confirm(fleet: Fleet, record: Record, now: datetime) -> None:
    """The SLA manager confirms every breach the month close proposed (each confirmation writes a credit)."""
    actor = Actor.for_user(fleet.world.sla_manager)
    proposed = Breach.objects.filter(carrier_id__in=record.carriers.values(), status=BreachStatus.PROPOSED)
    slugs = {pk: slug for slug, pk in record.carriers.items()}
    for breach in proposed.order_by("id"):
        breach_decide(breach_id=breach.pk, decision="confirm", actor=actor)
        month = breach.period_start.isoformat()
        record.confirmed_breaches.setdefault(month, {}).setdefault(slugs[breach.carrier_id], []).append(breach.sli)


def _incidents_reconcile(record: Record, profile: Profile) -> None:
    """Take the instants of the product's automation onto the record, each checked against its window.

    Opening (gap detector, exception subscribers), the runbook's recovery and failover are the
    product's acts: their instants come from its incidents, and any outside the window the fleet
    expects them in is a problem the comparison reports. On-call resolutions are the fleet's own.
    What was not due before the run ended (an opening, a recovery, a failover) is not expected of it.
    """
    slack = timedelta(seconds=profile.runbook_tick_seconds * 2 + profile.sample_seconds)
    timeout = timedelta(seconds=profile.recovery_timeout_seconds)
    for rec in record.incidents:
        found = product_incident(record, rec)
        if found is None:
            if rec.trigger_latest <= record.end:
                rec.problems.append("the product opened no incident")
            continue
        rec.incident_id = found.pk
        if not rec.trigger_earliest <= found.triggered_at <= rec.trigger_latest:
            rec.problems.append(
                f"opened at {found.triggered_at.isoformat()}, expected in "
                f"[{rec.trigger_earliest.isoformat()}, {rec.trigger_latest.isoformat()}]"
            )
        rec.triggered_at = found.triggered_at
        if rec.fails_over:
            if found.failover_at is None:
                if found.triggered_at + timeout + slack <= record.end:  # not when the run ended before it was due
                    rec.problems.append("not failed over")
            elif rec.failover_at is not None and found.failover_at != rec.failover_at:
                rec.problems.append("failover instant differs from the handover of the mission")
            elif not found.triggered_at + timeout <= found.failover_at <= found.triggered_at + timeout + slack:
                rec.problems.append(f"failed over at {found.failover_at.isoformat()}, outside timeout + {slack}")
            rec.failover_at = found.failover_at
        if rec.resolved_by == "recovery" and rec.comms_back_at is not None:
            resolved = found.resolved_at
            if found.status not in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED) or resolved is None:
                if rec.comms_back_at + slack <= record.end:
                    rec.problems.append("comms came back but the incident was not resolved")
                resolved = None
            elif not rec.comms_back_at <= resolved <= rec.comms_back_at + slack:
                rec.problems.append(
                    f"resolved at {resolved.isoformat()}, comms back at {rec.comms_back_at.isoformat()}"
                )
            rec.resolved_at = resolved
        elif rec.resolved_at is not None and found.resolved_at != rec.resolved_at:
            rec.problems.append("resolution instant differs from the on-call's")


def settings_summary() -> dict[str, Any]:
    return {"database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1], "rollups": settings.SLA_ROLLUPS}


__all__ = ["RunResult", "default_start", "run_program", "settings_summary", "truth"]
