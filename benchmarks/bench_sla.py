#!/usr/bin/env python
"""Time a full SLA evaluation over 100,000 missions spread across 30 days, on PostgreSQL.

Prints the median of several full evaluations of one carrier (every SLI over
the 1 h, 24 h, 7 d, 30 d and month windows plus the burn-rate windows, and
storing the measurements) next to the median time of one
``SELECT COUNT(*) FROM missions_mission`` measured in the same run, and
their ratio. Target (DESIGN.md §6): <= 1 s.

The data is loaded with COPY into a throw-away database (``<name>_bench_sla``,
created and dropped here) on the server named by ``DATABASE_URL`` (or
``BENCH_DATABASE_URL``); the database you work in is not touched.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_sla.py

Knobs: BENCH_SLA_MISSIONS (100000), BENCH_SLA_RUNS (5); BENCH_SLA_PROFILE=1 lists
the slowest statements and EXPLAINs one (BENCH_SLA_EXPLAIN=<rank>, default the
slowest), BENCH_SLA_PROFILE=python adds a cProfile of one evaluation;
BENCH_SLA_KEEP=1 keeps the database afterwards.
"""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchmarks._report import figure  # noqa: E402

MISSIONS = int(os.environ.get("BENCH_SLA_MISSIONS", "100000"))
DAYS = 30
RUNS = int(os.environ.get("BENCH_SLA_RUNS", "5"))


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_sla: skipped, needs PostgreSQL (set DATABASE_URL or BENCH_DATABASE_URL to a postgres:// URL)")
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
    # Its own throw-away database, so a test run against the same server is not clobbered.
    # Tables straight from the models (no data migrations needed for a benchmark).
    connection.settings_dict.setdefault("TEST", {}).update({"NAME": f"{old_name}_bench_sla", "MIGRATE": False})
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        return run()
    finally:
        if not os.environ.get("BENCH_SLA_KEEP"):  # keep it to EXPLAIN the statements afterwards
            connection.creation.destroy_test_db(old_name, verbosity=0)


def _cell(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _copy(table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """COPY rows in; NOT NULL columns not listed get their model field's default (columns other code adds)."""
    from django.apps import apps
    from django.db import connection

    model = next(m for m in apps.get_models() if m._meta.db_table == table)
    extra = [
        f for f in model._meta.concrete_fields
        if f.column not in columns and not f.null and not f.primary_key and f.get_default() is not None
    ]  # fmt: skip
    defaults = [_cell(f.get_default()) for f in extra]
    columns = [*columns, *(f.column for f in extra)]
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join([*(_cell(v) for v in row), *defaults]) + "\n")
    buffer.seek(0)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            while chunk := buffer.read(1 << 20):
                copy.write(chunk)


def _columns(table: str) -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


def _next_id(model: type[Any]) -> int:
    """The first id COPY may use for ``model`` (its table is filled here without the sequence)."""
    from django.db.models import Max

    return int(model.objects.aggregate(top=Max("id"))["top"] or 0) + 1


def load(now: datetime) -> int:
    """COPY the facts in: shipments and missions, telemetry of recent missions, outbound calls, incidents."""
    from datetime import date

    from django.db import connection

    from missions.models import Carrier, Shipment, Vehicle
    from sla.models import Contract

    rng = random.Random(7)  # reproducible synthetic data
    carrier = Carrier.objects.create(name="Bench Autonomous", slug="bench-autonomous", kind="autonomous")
    other = Carrier.objects.create(name="Bench Other", slug="bench-other", kind="human_driven")
    vehicle = Vehicle.objects.create(carrier=carrier, external_id="TRK-BENCH")
    Contract.objects.create(carrier=carrier, effective_from=date(2000, 1, 1), monthly_fee_usd=50000)
    start = now - timedelta(days=DAYS)
    first_shipment = _next_id(Shipment)
    shipments, missions = [], []
    statuses = ["completed"] * 90 + ["failed"] * 3 + ["handed_over"] * 2 + ["cancelled"] * 3 + ["en_route"] * 2
    for n in range(MISSIONS):
        done = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        due = done + timedelta(minutes=rng.uniform(-60, 240))
        began = done - timedelta(hours=rng.uniform(2, 10))
        status = rng.choice(statuses)
        carrier_id = carrier.pk if n % 10 else other.pk  # 90 % on the evaluated carrier
        shipments.append(
            (first_shipment + n, f"SHP-B-{n:07d}", "Dallas, TX", "TX", 32.77, -96.79, "Houston, TX", "TX", 29.76,
             -95.36, began - timedelta(hours=1), began, due - timedelta(hours=3), due, 18000, False, "",
             "delivered", uuid.uuid4(), now)
        )  # fmt: skip
        running = status == "en_route"
        missions.append(
            (n + 1, first_shipment + n, carrier_id, vehicle.pk if carrier_id == carrier.pk else None, "I-45",
             "autonomous", status, "", uuid.uuid4(), n % 17 == 0, began, None if running else done, now, now)
        )  # fmt: skip
    _copy(
        "missions_shipment",
        ["id", "reference", "origin_address", "origin_region", "origin_lat", "origin_lon", "destination_address",
         "destination_region", "destination_lat", "destination_lon", "pickup_window_start", "pickup_window_end",
         "delivery_window_start", "delivery_window_end", "weight_kg", "hazmat", "preferred_route", "status",
         "correlation_id", "created_at"],
        shipments,
    )  # fmt: skip
    _copy(
        "missions_mission",
        ["id", "shipment_id", "carrier_id", "vehicle_id", "route_id", "autonomy_mode", "status", "status_reason",
         "correlation_id", "human_intervened", "started_at", "completed_at", "created_at", "updated_at"],
        missions,
    )  # fmt: skip
    # Telemetry: one sample every 10 s for the missions of the last 6 hours on the evaluated carrier.
    recent = [m for m in missions if m[2] == carrier.pk and m[11] and m[11] > now - timedelta(hours=6)]
    samples = []
    for m in recent:
        t = max(m[10], now - timedelta(hours=6))
        while t < m[11]:
            if rng.random() > 0.02:
                samples.append((m[0], vehicle.pk, t, 30.0, -97.0, "{}"))
            t += timedelta(seconds=10)
    _copy("missions_telemetrysample", ["mission_id", "vehicle_id", "recorded_at", "lat", "lon", "data"], samples)
    calls = [
        (carrier.pk, "tender_submit", "POST", "https://carrier.example/tenders", 1, 200, rng.lognormvariate(5, 0.6),
         rng.random() > 0.01, "", "", start + timedelta(seconds=rng.uniform(0, DAYS * 86400)))
        for _ in range(MISSIONS // 2)
    ]  # fmt: skip
    _copy(
        "missions_outboundcall",
        ["carrier_id", "operation", "method", "url", "attempt", "status_code", "latency_ms", "ok", "error",
         "idempotency_key", "started_at"],
        calls,
    )  # fmt: skip
    incidents = []
    for n in range(500):
        triggered = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        incidents.append(
            ("Lost comms", "lost_comms", "error", "resolved", carrier.pk, (n * 200) + 1, f"bench:{n}", "", "",
             triggered, triggered + timedelta(minutes=rng.uniform(5, 120)), "[]")
        )  # fmt: skip
    columns = ["title", "kind", "severity", "status", "carrier_id", "mission_id", "dedupe_key", "summary", "review",
               "triggered_at", "resolved_at", "pinned_telemetry"]  # fmt: skip
    present = _columns("runbooks_incident")
    keep = [i for i, c in enumerate(columns) if c in present]
    _copy("runbooks_incident", [columns[i] for i in keep], [tuple(row[i] for i in keep) for row in incidents])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"loaded {MISSIONS:,} missions over {DAYS} days, {len(samples):,} telemetry samples, "
        f"{len(calls):,} outbound calls, {len(incidents)} incidents"
    )
    return carrier.pk


def timed(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm caches and plans
    durations = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - t0)
    return statistics.median(durations)


def profile(fn: Callable[[], object]) -> None:
    """Print the slowest statements of one evaluation (BENCH_SLA_PROFILE=1)."""
    from django.db import connection

    seen: list[tuple[float, str, object]] = []

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seen.append((time.perf_counter() - t0, sql, params))

    t0 = time.perf_counter()
    with connection.execute_wrapper(wrapper):
        fn()
    print(f"profiled evaluation: {(time.perf_counter() - t0) * 1000:.1f} ms wall")
    if os.environ.get("BENCH_SLA_PROFILE") == "python":
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(fn)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    print(f"{len(seen)} statements, {sum(t for t, _, _ in seen) * 1000:.1f} ms in the database")
    ranked = sorted(seen, key=lambda s: s[0], reverse=True)
    for t, sql, _ in ranked[:8]:
        print(f"  {t * 1000:7.1f} ms  {sql[:300]}")
    _, sql, params = ranked[int(os.environ.get("BENCH_SLA_EXPLAIN", "0"))]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN ANALYZE " + sql, params)
        print("\n".join(row[0] for row in cursor.fetchall()))


def run() -> int:
    from django.db import connection

    from sla.services import sla_evaluate

    now = datetime.now(tz=UTC).replace(microsecond=0)
    carrier_id = load(now)

    def count_all() -> object:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM missions_mission")
            return cursor.fetchone()

    def evaluate() -> object:
        return sla_evaluate(carrier_id=carrier_id, now=now)

    if os.environ.get("BENCH_SLA_PROFILE"):
        profile(evaluate)
    baseline = timed(count_all, RUNS)
    evaluation = timed(evaluate, RUNS)
    print(f"SELECT COUNT(*) over missions_mission:       {baseline * 1000:8.1f} ms (median of {RUNS})")
    print(f"full SLA evaluation (7 SLIs x 9 windows):    {evaluation * 1000:8.1f} ms (median of {RUNS})")
    print(f"ratio evaluation / COUNT(*):                 {evaluation / baseline:8.1f}x")
    print(f"target <= 1000 ms: {'met' if evaluation <= 1.0 else 'NOT met'}")
    figure(
        name=f"SLA evaluation, {MISSIONS:,} missions / {DAYS} days",
        measured=evaluation * 1000,
        unit="ms",
        baseline=baseline * 1000,
        baseline_name="ms COUNT(*)",
        target="<= 1,000 ms",
        met=evaluation <= 1.0,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
