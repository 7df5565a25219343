#!/usr/bin/env python
"""Telemetry retention on PostgreSQL: dropping a day's partition, next to deleting the same rows in chunks.

A day of a 10,000-truck fleet at 1 Hz is 864 million samples: more than this
machine generates in a benchmark's time. So ``BENCH_RETENTION_ROWS`` samples
(default 1,000,000: 10,000 trucks for 100 s) are written into one day's
partition, and:

- the figure: ``telemetry_purge`` drops that partition (detach + drop). It
  reads no row, so its time does not grow with the rows (checked here at a
  tenth of the rows as well);
- the baseline, same run: the same rows written into a plain table with a
  partition's columns and indexes (the table as it was before partitions)
  and deleted as retention did then (ids of 10,000 rows found by time, then
  deleted by id, a transaction each); its rate, projected to 864 million
  rows, is what a day of the fleet would take.

Runs in a throw-away database (``<name>_bench_retention``) on the server named
by ``BENCH_DATABASE_URL`` or ``DATABASE_URL``.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_retention.py
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchmarks._report import figure  # noqa: E402

ROWS = int(os.environ.get("BENCH_RETENTION_ROWS", "1000000"))
TRUCKS = 10_000
FLEET_DAY = TRUCKS * 86_400  # samples a day of the fleet writes at 1 Hz


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_retention: skipped, needs PostgreSQL (set DATABASE_URL or BENCH_DATABASE_URL)")
        return 0
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings_test")
    os.environ.setdefault("DB_POOL", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{old_name}_bench_retention"
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        return run()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def fill(day: datetime, rows: int, into: str = "missions_telemetrysample") -> float:
    """``rows`` samples of ``TRUCKS`` trucks, second by second from 06:00 of ``day``; seconds taken."""
    from django.db import connection

    start = day.replace(hour=6)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {into} (mission_id, vehicle_id, recorded_at, lat, lon, speed_kph,"  # nosec B608
            " heading_deg, autonomy_mode, data, event_id, bucket_s)"
            " SELECT 1 + n %% %s, 1 + n %% %s, %s + (n / %s) * interval '1 second', 32.5, -96.5, 88.0, 170.0,"
            " 'autonomous', '{}', gen_random_uuid(), %s + n / %s"
            " FROM generate_series(0, %s - 1) AS n",
            [TRUCKS, TRUCKS, start, TRUCKS, int(start.timestamp()), TRUCKS, rows],
        )
        cursor.execute(f"ANALYZE {into}")
    return time.perf_counter() - t0


def run() -> int:
    from django.db import connection
    from django.utils import timezone

    from missions.telemetry import partitions
    from missions.telemetry.retention import telemetry_purge

    table = partitions.SAMPLES
    if not partitions.is_partitioned(table):
        print("bench_retention: the sample table is not partitioned (migration 0021 not applied?)")
        return 1
    today = table.floor(timezone.now())
    days = 30
    small_day, big_day, delete_day = (today - timedelta(days=days + n) for n in (3, 2, 1))
    for day in (small_day, big_day, delete_day):
        partitions.partition_create(table, day)

    # The figure: the day's partition dropped by retention (the purge drops every day wholly past it).
    print(f"writing {ROWS // 10:,} and {ROWS:,} samples into two days' partitions ...", flush=True)
    fill(small_day, ROWS // 10)
    took = fill(big_day, ROWS)
    print(f"  ({ROWS / took:,.0f} rows/s written)")
    size = _partition_bytes(connection, table.partition_name(big_day))
    timings = {}
    for day, rows in ((small_day, ROWS // 10), (big_day, ROWS)):
        t0 = time.perf_counter()
        dropped = partitions.drop_before(table, day + timedelta(days=1))
        timings[rows] = time.perf_counter() - t0
        assert table.partition_name(day) in dropped, dropped
    drop_s = timings[ROWS]

    # The baseline: the same rows in a plain table, deleted in chunks as retention did before partitions.
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE bench_plain_samples (LIKE {table.default} INCLUDING ALL)")
    fill(delete_day, ROWS, into="bench_plain_samples")
    t0 = time.perf_counter()
    deleted = chunked_delete("bench_plain_samples", delete_day + timedelta(days=1))
    delete_s = time.perf_counter() - t0
    assert deleted == ROWS, deleted
    rate = deleted / delete_s
    projected = FLEET_DAY / rate
    telemetry_purge(days=days)  # the emptied partition goes too

    print(f"one day's partition, {ROWS:,} samples ({size / 1e6:,.0f} MB with indexes):")
    small_ms = timings[ROWS // 10] * 1000
    print(f"  dropped by retention in {drop_s * 1000:,.1f} ms (a tenth of the samples: {small_ms:,.1f} ms)")
    print(f"  chunked DELETE of the same rows (baseline): {delete_s:,.1f} s, {rate:,.0f} rows/s")
    print(
        f"  a day of {TRUCKS:,} trucks at 1 Hz is {FLEET_DAY:,} samples: chunked DELETE about {projected / 3600:,.1f} h"
    )
    figure(
        name=f"retention, 1 day of {TRUCKS:,} trucks at 1 Hz (drop partition)",
        measured=drop_s,
        unit="s",
        baseline=projected,
        baseline_name=f"s chunked DELETE ({rate:,.0f} rows/s x 864M)",
        target="< 1 s",
        met=drop_s < 1.0,
    )
    return 0


def chunked_delete(table: str, before: datetime) -> int:
    """What retention did before partitions, on a plain table: 10,000 ids found by time, deleted by id."""
    from django.db import connection, transaction

    from missions.telemetry.retention import DELETE_CHUNK

    find = f"SELECT id FROM {table} WHERE recorded_at < %s LIMIT %s"  # nosec B608
    delete = f"DELETE FROM {table} WHERE id = ANY(%s)"  # nosec B608
    total = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(find, [before, DELETE_CHUNK])
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return total
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(delete, [ids])
            total += cursor.rowcount


def _partition_bytes(connection: object, name: str) -> int:
    from django.db import connection as conn

    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(to_regclass(%s))", [name])
        return int(cursor.fetchone()[0])


if __name__ == "__main__":
    raise SystemExit(main())
