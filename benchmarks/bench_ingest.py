#!/usr/bin/env python
"""Sustained batch telemetry ingest on PostgreSQL, next to a raw COPY of the same rows.

A fleet of ``BENCH_VEHICLES`` trucks (default 1,000) reports at 1 Hz; each
batch is one second of the fleet (one event per vehicle), handed to
``ingest_events`` as decoded JSON, as the HTTP batch view and the WebSocket
stream do: validated, ownership-checked, deduped, written to the window and
the 1 Hz samples, missions' last-seen moved, one transaction per batch.

The baseline, measured in the same run, is a raw COPY of the same sample
rows (already serialised, no validation) into a table with the sample
table's columns and indexes, one transaction per batch. Target (DESIGN.md §6):
>= 30,000 events/s and >= 30 % of the raw COPY.

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

VEHICLES = int(os.environ.get("BENCH_VEHICLES", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "40"))  # batches measured per run
WARMUP = 3
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_ingest: skipped, needs PostgreSQL (set DATABASE_URL or BENCH_DATABASE_URL to a postgres:// URL)")
        return 0
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings_test")
    os.environ.setdefault("DB_POOL", "0")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_ingest_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        return run()
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


def run() -> int:
    from django.db import connection, transaction

    from missions.telemetry.ingest import MissionCache, ingest_events

    carrier, missions = fleet()
    vehicle_pk = {m.pk: m.vehicle_id for m in missions}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    total_seconds = RUNS * (SECONDS + WARMUP)
    batches = [second_of_events(missions, start + timedelta(seconds=s)) for s in range(total_seconds)]

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_raw_samples (LIKE missions_telemetrysample INCLUDING ALL)")

    def raw_rows(batch: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
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
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY bench_raw_samples (mission_id, vehicle_id, recorded_at, lat, lon, speed_kph, heading_deg,"
                " autonomy_mode, data, event_id, bucket_s) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)

    ingest_rates, raw_rates = [], []
    cache = MissionCache(ttl_seconds=3600)
    for run_no in range(RUNS):
        chunk = batches[run_no * (SECONDS + WARMUP) : (run_no + 1) * (SECONDS + WARMUP)]
        for batch in chunk[:WARMUP]:
            ingest_events(carrier=carrier, events=batch, source="bench", cache=cache)
        measured = chunk[WARMUP:]
        t0 = time.perf_counter()
        accepted = 0
        for batch in measured:
            accepted += ingest_events(carrier=carrier, events=batch, source="bench", cache=cache).accepted
        ingest_rates.append(accepted / (time.perf_counter() - t0))
        assert accepted == len(measured) * VEHICLES, accepted

        prepared = [raw_rows(b) for b in measured]  # serialisation is not part of the raw figure
        t0 = time.perf_counter()
        for rows in prepared:
            copy_raw(rows)
        raw_rates.append(sum(len(r) for r in prepared) / (time.perf_counter() - t0))

    ingest = statistics.median(ingest_rates)
    raw = statistics.median(raw_rates)
    print(f"vehicles {VEHICLES}, batch {VEHICLES} events (1 s of the fleet), {SECONDS} batches x {RUNS} runs")
    print(f"batch ingest (validated, deduped, window + 1 Hz samples, last seen): {ingest:,.0f} events/s (median)")
    print(f"raw COPY of the same sample rows (baseline, same run):               {raw:,.0f} rows/s (median)")
    print(f"ratio ingest / raw COPY: {ingest / raw:.0%}   targets: >= 30,000 events/s and >= 30%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
