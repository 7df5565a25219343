#!/usr/bin/env python
"""Telemetry-gap alarm for 10,000 vehicles: each silent truck alarmed within its threshold + 2 s, none falsely.

Gap detection runs as in production (``scripts/run_all.py``): PostgreSQL, a
Redis broker, Celery beat (whose gap detector thread checks every
``TELEMETRY_GAP_CHECK_SECONDS``) and one Celery worker (``--pool=threads
--concurrency=4``, which opens the incidents) as separate processes with the
production settings. The fleet is ``BENCH_GAPS_VEHICLES`` (10,000) en-route
missions of four carriers whose contracts set gap thresholds of 5, 10, 15 and
30 s. Every truck reports at 1 Hz, in batches of 1,000 events (the API's batch
limit) on ``BENCH_GAPS_STREAMS`` (2) threads, each with its own connection.
``BENCH_GAPS_INGEST=bulk`` (the default) writes them with ingest's own storage
(``persist``: the window and the 1 Hz samples by COPY; ``_missions_touch``:
the missions' last seen moved) without the per-event validation;
``BENCH_GAPS_INGEST=events`` calls the whole ingest service
(``ingest_events``, as the HTTP batch view does). On this 2-core machine the
HTTP path and even the validating service cannot carry 10,000 events a
second beside the detector and the database: what the detector reads (the
missions' last seen, the window it snapshots) is the same either way.
``BENCH_GAPS_SILENT`` (500) trucks chosen at random stop reporting, each at a
random moment within ``BENCH_GAPS_SPREAD`` (45) s; the others keep reporting
to the end. A truck this script itself failed to send for as long as its
threshold makes the run invalid (printed, exit 1).

The alarm is the detector's: the gap and its lost-comms exception, written in
one transaction (``MissionException.occurred_at`` = ``TelemetryGap.detected_at``).
Per silent truck it is timed from the moment its silence crossed its contract's
threshold (the timestamp of the last event this script sent for it + the
threshold); the lost-comms incident a worker opens from that exception
(``Incident.triggered_at``) is timed beside it, with its own summary row.
Printed: the distribution (p50, p90, p99, max), the share within threshold +
2 s, and the false alarms: a gap, exception or incident for a truck that never
went silent, or one raised before the truck's threshold was crossed. A silent
truck alarmed twice counts as a failure too. The baseline: the detector's
interval, and one scan of the 10,000 missions (the candidate query of a pass,
``gap_candidates``), timed once a second from this script. Exit 1 when an
alarm is false, missing or doubled (or the run invalid); a late one shows as
"NO" in the summary.

Runs in a throw-away database (``<name>_bench_gaps``) on the server named by
``BENCH_DATABASE_URL`` or ``DATABASE_URL``, with the broker in Redis database
``BENCH_GAPS_REDIS_DB`` (12) of the server of ``REDIS_URL``.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/bench_gaps.py
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchmarks._report import figure, percentile  # noqa: E402

VEHICLES = int(os.environ.get("BENCH_GAPS_VEHICLES", "10000"))
SILENT = int(os.environ.get("BENCH_GAPS_SILENT", "500"))
SPREAD_SECONDS = float(os.environ.get("BENCH_GAPS_SPREAD", "45"))
WARMUP_SECONDS = 5.0  # every truck reports this long before the first one falls silent
THRESHOLDS = (5, 10, 15, 30)  # one carrier (and contract) each
SLACK_SECONDS = 2.0  # DESIGN.md §6: alarmed within its threshold + 2 s
TAIL_SECONDS = 8.0  # reporting goes on this long after the last threshold crossing
RECOVERY_TIMEOUT_SECONDS = 3600  # the runbook waits; no failover within the run
BATCH = 1000  # the API's batch limit (API_TELEMETRY_MAX_BATCH)
REDIS_DB = int(os.environ.get("BENCH_GAPS_REDIS_DB", "12"))
SEED = int(os.environ.get("BENCH_GAPS_SEED", "18"))
# "bulk": ingest's storage in bulk (no per-event validation); "events": the whole ingest service.
INGEST = os.environ.get("BENCH_GAPS_INGEST", "bulk")
# The fleet's carriers are written by this many streams at once (each its own connection), as several
# ingest processes would: one stream cannot carry 10,000 events a second on this machine.
STREAMS = int(os.environ.get("BENCH_GAPS_STREAMS", "2"))
POOL = ThreadPoolExecutor(STREAMS, thread_name_prefix="stream")


# --- The verdict: pure, so a test can show it fails on a missing, late, early or false alarm ----------


@dataclass
class Verdict:
    """Silent trucks against the alarms raised: latency per silent truck and everything that went wrong."""

    latencies: dict[int, float] = field(default_factory=dict)  # mission -> s from threshold crossing to alarm
    missing: list[int] = field(default_factory=list)  # silent, never alarmed
    false: list[int] = field(default_factory=list)  # alarmed, never silent
    early: list[int] = field(default_factory=list)  # alarmed before its threshold was crossed
    duplicates: list[int] = field(default_factory=list)  # alarmed more than once for one silence
    slack: float = SLACK_SECONDS

    @property
    def within(self) -> int:
        return sum(1 for s in self.latencies.values() if s <= self.slack)

    @property
    def expected(self) -> int:
        return len(self.latencies) + len(self.missing)

    @property
    def share_within(self) -> float:
        return self.within / self.expected if self.expected else 1.0

    @property
    def false_alarms(self) -> int:
        return len(self.false) + len(self.early)

    @property
    def met(self) -> bool:
        return (
            self.expected > 0
            and not self.missing
            and not self.false_alarms
            and not self.duplicates
            and self.within == self.expected
        )


def assess(
    crossings: Mapping[int, datetime], alarms: Iterable[tuple[int, datetime]], *, slack: float = SLACK_SECONDS
) -> Verdict:
    """``crossings``: silent truck (mission) -> when its silence crossed its threshold; ``alarms``: (mission, at)."""
    by_mission: dict[int, list[datetime]] = {}
    for mission_id, at in alarms:
        by_mission.setdefault(mission_id, []).append(at)
    verdict = Verdict(slack=slack)
    for mission_id, times in sorted(by_mission.items()):
        crossed = crossings.get(mission_id)
        if crossed is None:
            verdict.false.append(mission_id)
            continue
        if len(times) > 1:
            verdict.duplicates.append(mission_id)
        first = min(times)
        if first < crossed:
            verdict.early.append(mission_id)
            continue
        verdict.latencies[mission_id] = (first - crossed).total_seconds()
    verdict.missing = sorted(m for m in crossings if m not in by_mission)
    return verdict


def distribution(values: list[float]) -> str:
    if not values:
        return "none"
    return ", ".join([f"p{p} {percentile(values, p):.2f} s" for p in (50, 90, 99)] + [f"max {max(values):.2f} s"])


# --- The run ---------------------------------------------------------------------------------------


@dataclass
class Truck:
    mission_id: int
    vehicle: str
    correlation_id: str
    carrier: int  # index into the carriers
    gap_seconds: int
    silent_at: float | None = None  # monotonic time from which it sends nothing
    last_ts: datetime | None = None  # timestamp of the last event sent
    max_gap: float = 0.0  # longest time between two of its events (this script's own stalls)

    def sent(self, stamp: datetime) -> None:
        if self.last_ts is not None:
            self.max_gap = max(self.max_gap, (stamp - self.last_ts).total_seconds())
        self.last_ts = stamp


def event_for(truck: Truck, now: datetime, i: int) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "event_id": str(uuid.uuid4()),
        "mission_id": truck.mission_id,
        "vehicle_id": truck.vehicle,
        "correlation_id": truck.correlation_id,
        "ts": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "position": {"lat": 30.0 + (i % 500) / 100, "lon": -97.0 + (i // 500) / 10, "speed_kph": 88.5,
                     "heading_deg": 171.0},
        "mission_state": "en_route",
        "health": {"fuel_pct": 71.0, "critical_sensors_ok": True, "ecu_errors": [], "thermal_warning": False},
        "connectivity": {"uplink": "5g", "packet_loss_pct": 0.3, "latency_ms": 45},
        "safety_event": None,
        "autonomy_mode": "autonomous",
    }  # fmt: skip


def fleet(count: int) -> tuple[list[Any], list[Truck]]:
    """Four carriers with a contract each (gap thresholds ``THRESHOLDS``) and ``count`` en-route trucks among them."""
    from benchmarks._server import fleet_create
    from tests.factories import CarrierFactory, ContractFactory

    carriers, trucks = [], []
    per = -(-count // len(THRESHOLDS))
    for c, gap in enumerate(THRESHOLDS):
        carrier = CarrierFactory(name=f"Gapless {gap}", slug=f"gapless-{gap}", operating_regions=["TX"])
        ContractFactory(carrier=carrier, telemetry_gap_seconds=gap, recovery_timeout_seconds=RECOVERY_TIMEOUT_SECONDS)
        carriers.append(carrier)
        n = min(per, count - c * per)
        for m in fleet_create(carrier, n):
            trucks.append(Truck(m.pk, m.vehicle.external_id, str(m.correlation_id), c, gap))
    return carriers, trucks


def ingest_second(carriers: list[Any], trucks: list[Truck], caches: list[Any], clock: float) -> int:
    """One second of the fleet: every truck not silent yet sends one event; returns how many were stored."""
    store = _store_events if INGEST == "events" else _store_bulk

    def one_carrier(c: int) -> int:
        stored = 0
        reporting = [t for t in trucks if t.carrier == c and (t.silent_at is None or clock < t.silent_at)]
        try:
            for start in range(0, len(reporting), BATCH):
                stored += store(carriers[c], reporting[start : start + BATCH], caches[c], start)
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()
        return stored

    from django.db import connection

    return sum(POOL.map(one_carrier, range(len(carriers))))


def _store_events(carrier: Any, chunk: list[Truck], cache: Any, offset: int) -> int:
    """The ingest path as the HTTP batch view calls it: validated, ownership-checked, stored, last seen moved."""
    from django.utils import timezone

    from missions.telemetry.ingest import ingest_events

    now = timezone.now()
    events = [event_for(t, now, offset + i) for i, t in enumerate(chunk)]
    result = ingest_events(carrier=carrier, events=events, source="bench", cache=cache)
    if result.accepted != len(events):
        raise RuntimeError(f"telemetry refused: {result.rejected[:3]}")
    stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
    for t in chunk:
        t.sent(stamp)
    return result.accepted


def _store_bulk(carrier: Any, chunk: list[Truck], cache: Any, offset: int) -> int:
    """Ingest's storage without the per-event validation: the window and 1 Hz samples, then the last seen moved."""
    from django.db import transaction
    from django.utils import timezone

    from missions.telemetry.ingest import _missions_touch
    from missions.telemetry.normalize import TelemetryEvent, ts_format
    from missions.telemetry.storage import Accepted, persist

    now = timezone.now()
    stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
    text = ts_format(stamp)
    infos = cache.get_many([t.mission_id for t in chunk], carrier.pk)
    accepted = [
        Accepted(
            index=i,
            event=TelemetryEvent(
                event_id=uuid.uuid4(), mission_id=t.mission_id, vehicle_id=t.vehicle,
                correlation_id=infos[t.mission_id].correlation_id, ts=stamp, ts_text=text,
                lat=30.0 + ((offset + i) % 500) / 100, lon=-97.0 + ((offset + i) // 500) / 10, speed_kph=88.5,
                heading_deg=171.0, mission_state="en_route", autonomy_mode="autonomous",
                health={"fuel_pct": 71.0, "critical_sensors_ok": True, "ecu_errors": [], "thermal_warning": False},
                connectivity={"uplink": "5g", "packet_loss_pct": 0.3, "latency_ms": 45},
            ),
            mission=infos[t.mission_id],
        )
        for i, t in enumerate(chunk)
    ]  # fmt: skip
    with transaction.atomic():
        new_ids = persist(accepted, received_at=now)
        _missions_touch([a for a in accepted if a.event.event_id in new_ids], now=now)
    for t in chunk:
        t.sent(stamp)
    return len(new_ids)


def scan_once() -> tuple[float, int]:
    """One detection pass's scan over the fleet (read only: nothing is raised): seconds, candidates found."""
    from django.utils import timezone

    from missions.telemetry.gaps import gap_candidates

    t0 = time.perf_counter()
    found = gap_candidates(now=timezone.now())
    return time.perf_counter() - t0, len(found)


def alarms_read() -> tuple[list[tuple[int, datetime]], list[tuple[int, datetime]], list[tuple[int, datetime]]]:
    """(mission, when) of every gap recorded, lost-comms exception raised and lost-comms incident opened."""
    from missions.choices import ExceptionKind
    from missions.models import MissionException
    from missions.models.telemetry import TelemetryGap
    from runbooks.models import Incident

    gaps = list(TelemetryGap.objects.values_list("mission_id", "detected_at"))
    exceptions = list(
        MissionException.objects.filter(kind=ExceptionKind.LOST_COMMS).values_list("mission_id", "occurred_at")
    )
    incidents = list(Incident.objects.filter(kind="lost_comms").values_list("mission_id", "triggered_at"))
    return gaps, exceptions, incidents


def run(db_url: str, redis_url: str) -> int:
    from django.conf import settings
    from django.db import connection

    from benchmarks._server import server_env
    from benchmarks.bench_failover import Processes, broker_clear, wait_for
    from missions.telemetry.ingest import MissionCache
    from tms_console.models import ProcessHeartbeat

    t0 = time.monotonic()
    carriers, trucks = fleet(VEHICLES)
    rng = random.Random(SEED)
    silent = rng.sample(trucks, min(SILENT, len(trucks)))
    print(f"fleet: {len(trucks):,} en-route trucks, {len(carriers)} carriers (gap thresholds "
          f"{', '.join(f'{g} s' for g in THRESHOLDS)}), built in {time.monotonic() - t0:.1f} s; "
          f"{len(silent)} fall silent at random within {SPREAD_SECONDS:.0f} s", flush=True)  # fmt: skip
    interval = float(settings.TELEMETRY_GAP_CHECK_SECONDS)
    where = "a thread of beat" if settings.TELEMETRY_GAP_DETECTOR_IN_BEAT else "beat -> worker task"
    broker_clear(redis_url)
    caches = [MissionCache() for _ in carriers]
    # BENCH_GAPS_LOGDIR keeps beat's and the worker's logs there.
    keep = os.environ.get("BENCH_GAPS_LOGDIR")
    with contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="bench-gaps-") as tmp:
        env = server_env(
            db_url,
            REDIS_URL=redis_url,
            CELERY_TASK_ALWAYS_EAGER="0",
            CELERY_HEARTBEAT_SECONDS="2",
            LOG_LEVEL=os.environ.get("BENCH_GAPS_LOG_LEVEL", "WARNING"),
            TMS_VAR_DIR=tmp,
            EVIDENCE_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode("ascii"),
        )
        procs = Processes(env, Path(tmp))
        ticks: list[float] = []
        scans: list[float] = []
        try:
            started = time.time()
            procs.beat()
            procs.worker()
            wait_for(
                lambda: ProcessHeartbeat.objects.filter(
                    name="worker", seen_at__gte=datetime.fromtimestamp(started, tz=UTC)
                ).exists(),
                90,
                "beat and the worker to be up",
                every=0.5,
            )
            print(f"beat and worker up; gap detection every {interval:g} s ({where}), broker {redis_url}", flush=True)
            begin = time.monotonic()
            for t in silent:
                t.silent_at = begin + WARMUP_SECONDS + rng.uniform(0, SPREAD_SECONDS)
            end = begin + WARMUP_SECONDS + SPREAD_SECONDS + max(THRESHOLDS) + SLACK_SECONDS + TAIL_SECONDS
            second = 0
            while (clock := time.monotonic()) < end:
                tick0 = time.perf_counter()
                ingest_second(carriers, trucks, caches, clock)
                ticks.append(time.perf_counter() - tick0)
                took, _found = scan_once()
                scans.append(took)
                second += 1
                if second % 15 == 0:
                    print(f"  {clock - begin:5.0f} s: ingest of one second p50 {percentile(ticks, 50):.2f} s, "
                          f"max {max(ticks):.2f} s; silent so far "
                          f"{sum(1 for t in silent if t.silent_at and t.silent_at <= clock)}", flush=True)  # fmt: skip
                time.sleep(max(0.0, begin + second - time.monotonic()))
            time.sleep(SLACK_SECONDS)  # an alarm raised just now is committed by now
        except Exception:
            print(procs.tail(), flush=True)
            raise
        finally:
            procs.stop()
            broker_clear(redis_url)
            tail = procs.tail(20)
    connection.close()

    # The threshold crossing from what this script sent, not from what the detector recorded.
    # A truck this script itself failed to send for as long as its threshold (a stalled second of the
    # fleet) was really silent: it is left out of both sides, and the run does not count.
    stalled = {t.mission_id for t in trucks if t.max_gap >= t.gap_seconds}
    crossings = {
        t.mission_id: t.last_ts + timedelta(seconds=t.gap_seconds)
        for t in silent
        if t.last_ts is not None and t.mission_id not in stalled
    }
    gaps, exceptions, incidents = ([a for a in found if a[0] not in stalled] for found in alarms_read())
    by_gap = assess(crossings, gaps)
    by_exception = assess(crossings, exceptions)
    by_incident = assess(crossings, incidents)
    longest = max(t.max_gap for t in trucks)
    print(f"\nreporting ({INGEST}, {STREAMS} streams): {len(ticks)} seconds of the fleet, one second stored in "
          f"p50 {percentile(ticks, 50):.2f} s, p99 {percentile(ticks, 99):.2f} s, max {max(ticks):.2f} s; "
          f"longest time between two events of one truck {longest:.1f} s")  # fmt: skip
    print(f"baseline: detection every {interval:g} s ({where}); one pass's scan over {len(trucks):,} missions "
          f"p50 {percentile(scans, 50) * 1000:.1f} ms, p99 {percentile(scans, 99) * 1000:.1f} ms, "
          f"max {max(scans) * 1000:.1f} ms")  # fmt: skip
    for label, v in (("lost-comms exception", by_exception), ("lost-comms incident", by_incident)):
        print(f"threshold crossed -> {label}: {distribution(list(v.latencies.values()))}; "
              f"within threshold + {SLACK_SECONDS:.0f} s {v.within}/{v.expected} ({v.share_within:.1%}); "
              f"missing {len(v.missing)}, false {len(v.false)}, early {len(v.early)}, "
              f"twice {len(v.duplicates)}")  # fmt: skip
    gap_of = {t.mission_id: t.gap_seconds for t in silent}
    for gap in THRESHOLDS:
        values = [s for m, s in by_incident.latencies.items() if gap_of[m] == gap]
        print(f"  threshold {gap:>2} s: {len(values)} trucks, incident {distribution(values)}")
    if by_gap.false_alarms or by_gap.duplicates:
        print(f"gaps recorded falsely: {by_gap.false[:10]} early {by_gap.early[:10]}")
    # The alarm is the detector's: the gap and its lost-comms exception, written in one transaction.
    # The incident (and its page) is opened from that exception by a worker, measured beside it.
    false_alarms = by_incident.false_alarms + by_exception.false_alarms + by_gap.false_alarms
    valid = not stalled and not false_alarms and not by_exception.missing and not by_exception.duplicates
    if stalled:
        print(f"NOT A VALID RUN: this script's own feed stalled past the threshold for {len(stalled)} trucks "
              f"(longest {longest:.1f} s between two events of one truck)")  # fmt: skip
    if not (by_exception.met and by_incident.met):
        print(tail)
    lat = list(by_exception.latencies.values())
    figure(
        name=f"gap alarm, {len(trucks):,} vehicles, {len(crossings)} silent: threshold -> alarm p99",
        measured=percentile(lat, 99) if lat else None,
        unit="s",
        baseline=interval,
        baseline_name="s detection interval",
        target=f"<= {SLACK_SECONDS:.0f} s for every truck",
        met=by_exception.met and by_gap.met and not stalled,
    )
    figure(
        name="gap alarm: share within threshold + 2 s",
        measured=100 * by_exception.share_within,
        unit="%",
        baseline=percentile(scans, 50) * 1000,
        baseline_name="ms one scan of the fleet",
        target="100 %",
        met=by_exception.within == by_exception.expected and by_exception.expected > 0,
    )
    figure(
        name="gap alarm: false alarms (gaps, exceptions, incidents)",
        measured=float(false_alarms),
        unit="",
        target="0",
        met=not false_alarms and not stalled,
    )
    incident = list(by_incident.latencies.values())
    figure(
        name="gap alarm: threshold -> lost-comms incident (worker) p99",
        measured=percentile(incident, 99) if incident else None,
        unit="s",
        baseline=percentile(lat, 99) if lat else None,
        baseline_name="s to the exception",
        target=f"<= {SLACK_SECONDS:.0f} s, all {by_incident.expected} opened",
        met=by_incident.met and not stalled,
    )
    # Exit 1 when the run cannot be trusted or an alarm is wrong (false, missing, twice); late shows as NO.
    return 0 if valid else 1


def main() -> int:
    from benchmarks._server import workers_main

    return workers_main("bench_gaps", REDIS_DB, run)


if __name__ == "__main__":
    raise SystemExit(main())
