#!/usr/bin/env python
"""Sustained batch telemetry ingest on PostgreSQL, next to a raw COPY of the same rows.

A fleet of ``BENCH_VEHICLES`` trucks (default 1,000) reports at 1 Hz; each
batch is one second of the fleet (one event per vehicle), handed to
``ingest_events`` as decoded JSON, as the HTTP batch view and the WebSocket
stream do: validated, ownership-checked, deduped, written to the window and
the 1 Hz samples, missions' last-seen moved, one transaction per batch.

The baseline, measured in the same run, is a raw COPY of the same rows the
ingest stores for those events (already serialised, no validation, no
dedupe): each event's window row (its dedupe record) and its 1 Hz sample
row, into two tables with the window's and the sample table's columns and
indexes, one transaction per batch. Target (DESIGN.md §6): >= 30,000
events/s and >= 30 % of the raw COPY.

Runs in a throw-away database (``bench_ingest_<name>``, created and dropped
here) on the server named by ``BENCH_DATABASE_URL`` or ``DATABASE_URL``.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchmarks._report import figure  # noqa: E402

VEHICLES = int(os.environ.get("BENCH_VEHICLES", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "40"))  # batches measured per run
WARMUP = 3
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "2"))  # concurrent streams in the second figure


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_ingest: skipped, needs PostgreSQL (set DATABASE_URL or BENCH_DATABASE_URL to a postgres:// URL)")
        return 0
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings_test")
    os.environ.setdefault("DB_POOL", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # the streams' live-map broadcasts have no listener here
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{old_name}_bench_ingest"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        return run(url.rsplit("/", 1)[0] + f"/{name}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def fleet() -> tuple[Any, list[Any]]:
    from missions.choices import MissionStatus
    from tests.factories import CarrierFactory, MissionFactory

    carrier = CarrierFactory(slug="bench", name="Bench carrier")
    missions = [MissionFactory(carrier=carrier, status=MissionStatus.EN_ROUTE) for _ in range(VEHICLES)]
    return carrier, missions


def second_of_events(missions: list[Any], ts: datetime) -> list[dict[str, Any]]:
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    events = []
    for i, m in enumerate(missions):
        events.append(
            {
                "schema_version": "1",
                "event_id": str(uuid.uuid4()),
                "mission_id": m.pk,
                "vehicle_id": m.vehicle.external_id,
                "correlation_id": str(m.correlation_id),
                "ts": stamp,
                "position": {
                    "lat": 30.0 + (i % 500) / 100,
                    "lon": -97.0 + (i // 500) / 10,
                    "speed_kph": 88.5,
                    "heading_deg": 171.0,
                    "accuracy_m": 2.5,
                },
                "mission_state": "en_route",
                "health": {"fuel_pct": 71.0, "critical_sensors_ok": True, "ecu_errors": [], "thermal_warning": False},
                "connectivity": {"uplink": "5g", "packet_loss_pct": 0.3, "latency_ms": 45},
                "safety_event": None,
                "autonomy_mode": "autonomous",
            }
        )
    # As received: decoded from JSON text, not shared Python objects.
    return list(json.loads(json.dumps(events)))


def raw_rows(batch: list[dict[str, Any]], vehicle_pk: dict[int, int]) -> list[tuple[Any, ...]]:
    rows = []
    for e in batch:
        p = e["position"]
        ts = datetime.fromisoformat(e["ts"])
        data = json.dumps({"health": e["health"], "connectivity": e["connectivity"], "mission_state": "en_route"})
        rows.append(
            (
                e["mission_id"], vehicle_pk[e["mission_id"]], ts, p["lat"], p["lon"], p["speed_kph"],
                p["heading_deg"], e["autonomy_mode"], data, e["event_id"], int(ts.timestamp()),
            )
        )  # fmt: skip
    return rows


def copy_raw(rows: list[tuple[Any, ...]]) -> None:
    """One batch's window rows and sample rows, COPYed as they are, in one transaction."""
    from django.db import connection, transaction

    received_at = datetime.now(UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(
            "COPY bench_raw_window (event_id, mission_id, recorded_at, received_at) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((row[9], row[0], row[2], received_at))
        with cursor.cursor.copy(
            "COPY bench_raw_samples (mission_id, vehicle_id, recorded_at, lat, lon, speed_kph, heading_deg,"
            " autonomy_mode, data, event_id, bucket_s) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)


def stream_once(carrier: Any, batches: list[list[dict[str, Any]]], cache: Any) -> tuple[int, float]:
    """Ingest ``batches`` one after the other; (events accepted, seconds)."""
    from missions.telemetry.ingest import ingest_events

    t0 = time.perf_counter()
    accepted = 0
    for batch in batches:
        accepted += ingest_events(carrier=carrier, events=batch, source="bench", cache=cache).accepted
    return accepted, time.perf_counter() - t0


def stream_worker(db_url: str, slug: str, offset_s: int, barrier: Any, out: Any) -> None:
    """One of several concurrent ingest streams (a web process or a stream per carrier)."""
    os.environ["DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tms_console.settings_test"
    os.environ["DB_POOL"] = "0"
    import django

    django.setup()
    from missions.models import Carrier, Mission
    from missions.telemetry.ingest import MissionCache

    carrier = Carrier.objects.get(slug=slug)
    missions = list(Mission.objects.filter(carrier=carrier).select_related("vehicle").order_by("pk"))
    vehicle_pk = {m.pk: m.vehicle_id for m in missions}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2) + timedelta(seconds=offset_s)
    batches = [second_of_events(missions, start + timedelta(seconds=s)) for s in range(SECONDS + WARMUP)]
    prepared = [raw_rows(b, vehicle_pk) for b in batches[WARMUP:]]
    cache = MissionCache(ttl_seconds=3600)
    stream_once(carrier, batches[:WARMUP], cache)
    barrier.wait()
    t0 = time.time()
    accepted, _ = stream_once(carrier, batches[WARMUP:], cache)
    t1 = time.time()
    barrier.wait()
    r0 = time.time()
    for rows in prepared:
        copy_raw(rows)
    r1 = time.time()
    out.put((accepted, t0, t1, sum(len(r) for r in prepared), r0, r1))


def run(db_url: str) -> int:
    import multiprocessing

    from django.db import connection

    from missions.telemetry.ingest import MissionCache

    carrier, missions = fleet()
    vehicle_pk = {m.pk: m.vehicle_id for m in missions}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    total_seconds = RUNS * (SECONDS + WARMUP)
    batches = [second_of_events(missions, start + timedelta(seconds=s)) for s in range(total_seconds)]

    with connection.cursor() as cursor:
        # With time partitions (docs/decisions/0028), a plain table shaped like one partition: the same
        # columns and indexes (the sample's per-partition (vehicle, second) index included).
        for raw, table in (
            ("bench_raw_samples", "missions_telemetrysample"),
            ("bench_raw_window", "missions_telemetrywindowevent"),
        ):
            cursor.execute("SELECT coalesce(to_regclass(%s), to_regclass(%s))::text", [f"{table}_default", table])
            cursor.execute(f"CREATE TABLE {raw} (LIKE {cursor.fetchone()[0]} INCLUDING ALL)")

    ingest_rates, raw_rates = [], []
    cache = MissionCache(ttl_seconds=3600)
    for run_no in range(RUNS):
        chunk = batches[run_no * (SECONDS + WARMUP) : (run_no + 1) * (SECONDS + WARMUP)]
        stream_once(carrier, chunk[:WARMUP], cache)
        measured = chunk[WARMUP:]
        accepted, seconds = stream_once(carrier, measured, cache)
        ingest_rates.append(accepted / seconds)
        assert accepted == len(measured) * VEHICLES, accepted

        prepared = [raw_rows(b, vehicle_pk) for b in measured]  # serialisation is not part of the raw figure
        t0 = time.perf_counter()
        for rows in prepared:
            copy_raw(rows)
        raw_rates.append(sum(len(r) for r in prepared) / (time.perf_counter() - t0))

    ingest = statistics.median(ingest_rates)
    raw = statistics.median(raw_rates)
    print(f"vehicles {VEHICLES}, batch {VEHICLES} events (1 s of the fleet), {SECONDS} batches x {RUNS} runs")
    print(f"one stream:  batch ingest (validated, deduped, window + 1 Hz samples, last seen): {ingest:,.0f} events/s")
    print(f"             raw COPY of the same window + sample rows (baseline, same run):      {raw:,.0f} events/s")
    print(f"             ratio ingest / raw COPY: {ingest / raw:.0%}")
    figure(name="batch ingest, 1 stream, 1,000-event batches", measured=ingest, unit="ev/s",
           baseline=raw, baseline_name="events/s raw COPY, 1 stream", target=">= 30,000 ev/s, >= 30% COPY",
           met=ingest >= 30_000 and ingest / raw >= 0.30)  # fmt: skip

    if STREAMS > 1:
        # Several carriers (or web processes) ingest at once: each stream has its own fleet and connection.
        from benchmarks._server import fleet_create
        from tests.factories import CarrierFactory

        for n in range(1, STREAMS):
            fleet_create(CarrierFactory(slug=f"bench{n}", name=f"Bench carrier {n}"), VEHICLES)
        connection.close()
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(STREAMS), ctx.Queue()
        slugs = ["bench"] + [f"bench{n}" for n in range(1, STREAMS)]
        procs = [
            ctx.Process(target=stream_worker, args=(db_url, slug, 3600 + n * 600, barrier, out))
            for n, slug in enumerate(slugs)
        ]
        for proc in procs:
            proc.start()
        parts = [out.get(timeout=300) for _ in procs]
        for proc in procs:
            proc.join(30)
        accepted = sum(p[0] for p in parts)
        multi = accepted / (max(p[2] for p in parts) - min(p[1] for p in parts))
        raw_multi = sum(p[3] for p in parts) / (max(p[5] for p in parts) - min(p[4] for p in parts))
        print(f"{STREAMS} streams: batch ingest {multi:,.0f} events/s; raw COPY {raw_multi:,.0f} events/s;"
              f" ratio {multi / raw_multi:.0%}")  # fmt: skip
        figure(name=f"batch ingest, {STREAMS} concurrent streams", measured=multi, unit="ev/s",
               baseline=raw_multi, baseline_name=f"events/s raw COPY, {STREAMS} streams",
               target=">= 30,000 ev/s, >= 30% COPY", met=multi >= 30_000 and multi / raw_multi >= 0.30)  # fmt: skip
    print("targets (DESIGN.md §6): >= 30,000 events/s and >= 30% of the raw COPY")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
