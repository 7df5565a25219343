#!/usr/bin/env python
"""Store-and-forward backfill (NDJSON, one request) next to the batch endpoint (1,000 events a request), and memory.

A throw-away PostgreSQL database gets a carrier and fleets of ``BENCH_BACKFILL_VEHICLES``
en-route missions. The console is served as in production (DEBUG off, psycopg pool), by
gunicorn (one gthread worker, the README's ingest path) and by daphne (``make run``).
Against each server, one client, one connection at a time:

- **batch** (the baseline, same run): ``BENCH_BACKFILL_EVENTS`` events (default 100,000)
  posted to ``/api/v1/telemetry/batch``, 1,000 a request, one request after the other,
  each with its Idempotency-Key;
- **backfill**: the same number of events, the same timeline on a fleet of its own (so both
  take the same storage path), as one NDJSON upload to ``/api/v1/telemetry/backfill``.

Each figure is events/s from the first byte sent to the last byte of the last answer,
over ``BENCH_BACKFILL_ROUNDS`` (2) uploads per method taken in ABBA order (batch, backfill,
backfill, batch), so that the other work on the machine's two cores weighs on both alike;
every answer is checked (all accepted) and the rows counted in the database afterwards.
Target: backfill >= 80 % of batch.

Memory: the server's peak resident memory growth (``VmHWM`` after resetting it through
``/proc/<pid>/clear_refs``, summed over the server's processes, minus the resident memory
before) while it takes an upload of 10,000 lines and one of 100,000 lines. Constant
memory means the second is no larger than the first, give or take allocator noise.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_backfill.py
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port

EVENTS = int(os.environ.get("BENCH_BACKFILL_EVENTS", "100000"))
VEHICLES = int(os.environ.get("BENCH_BACKFILL_VEHICLES", "100"))
SMALL = EVENTS // 10  # the memory comparison: 10,000 lines against 100,000
BATCH = 1000
ROUNDS = int(os.environ.get("BENCH_BACKFILL_ROUNDS", "2"))  # uploads of EVENTS per method and server
TARGET_RATIO = 0.80
# Allocator noise allowed between the two memory figures before "constant" is called off.
MEMORY_SLACK_MIB = 8.0


def timeline(missions: list[dict[str, Any]], count: int, start: datetime) -> list[bytes]:
    """``count`` events, one per vehicle and second from ``start``, each as its JSON line (no line break)."""
    lines = []
    for n in range(count):
        m = missions[n % len(missions)]
        ts = start + timedelta(seconds=n // len(missions))
        event = {
            "schema_version": "1",
            "event_id": str(uuid.uuid4()),
            "mission_id": m["id"],
            "vehicle_id": m["vehicle"],
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "position": {"lat": 31.5 + n % 7 / 100, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0,
                         "accuracy_m": 2.5},
            "mission_state": "en_route",
            "health": {"fuel_pct": 71.0, "critical_sensors_ok": True, "ecu_errors": [], "thermal_warning": False},
            "connectivity": {"uplink": "5g", "packet_loss_pct": 0.3, "latency_ms": 45},
            "autonomy_mode": "autonomous",
        }  # fmt: skip
        lines.append(json.dumps(event, separators=(",", ":")).encode())
    return lines


def tagged_fleet(carrier: Any, count: int) -> list[Any]:
    """``count`` en-route missions of ``carrier``, each with its own vehicle and shipment, named apart from others."""
    from missions.choices import MissionStatus
    from missions.models import Mission, Shipment, Vehicle
    from tests.factories import ShipmentFactory

    tag = uuid.uuid4().hex[:8]
    shipments = Shipment.objects.bulk_create(
        [ShipmentFactory.build(reference=f"BF-{tag}-{n:05d}") for n in range(count)], batch_size=1000
    )
    vehicles = Vehicle.objects.bulk_create(
        [Vehicle(carrier=carrier, external_id=f"TRK-{tag}-{n:05d}") for n in range(count)], batch_size=1000
    )
    return Mission.objects.bulk_create(
        [
            Mission(shipment=s, carrier=carrier, vehicle=v, route_id="I-45-S", correlation_id=s.correlation_id,
                    status=MissionStatus.EN_ROUTE)
            for s, v in zip(shipments, vehicles, strict=True)
        ],
        batch_size=1000,
    )  # fmt: skip


def server_pids(pid: int) -> list[int]:
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_growth_mib(pid: int, send: Any) -> tuple[float, Any]:
    """(peak resident growth of the server's processes in MiB while ``send()`` runs, its result)."""
    pids = server_pids(pid)
    for p in pids:
        Path(f"/proc/{p}/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = sum(status_kib(p, "VmRSS") for p in pids)
    result = send()
    peak = sum(status_kib(p, "VmHWM") for p in pids)
    return (peak - before) / 1024, result


def run_server(kind: str, db_url: str, carrier_slug: str, issued: Any) -> dict[str, float]:
    import httpx

    from benchmarks._server import served, server_env
    from missions.models import Carrier
    from missions.models.telemetry import TelemetryWindowEvent

    carrier = Carrier.objects.get(slug=carrier_slug)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)

    def fleet_named() -> list[dict[str, Any]]:
        return [{"id": m.pk, "vehicle": m.vehicle.external_id} for m in tagged_fleet(carrier, VEHICLES)]

    # A fleet of its own for each measured upload: every one meets the same state (new events, new missions).
    batch_lines = [timeline(fleet_named(), EVENTS, start) for _ in range(ROUNDS)]
    backfill_lines = [timeline(fleet_named(), EVENTS, start) for _ in range(ROUNDS)]
    warm_lines = timeline(fleet_named(), 2000, start)
    small_lines = timeline(fleet_named(), SMALL, start)
    big_lines = timeline(fleet_named(), EVENTS, start)
    from django.db import connection

    connection.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # No safety ticker: it would raise lost comms for the fleets, whose telemetry is hours old, mid-measurement.
    with served(kind, port, server_env(db_url, SAFETY_TICKER="0"), workers=1) as proc:
        token = httpx.post(
            f"{base}/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "telemetry:write"},
            auth=(issued.client_id, issued.client_secret),
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ndjson_headers = {**auth, "Content-Type": "application/x-ndjson"}
        with httpx.Client(base_url=base, timeout=600.0) as client:

            def upload(lines: list[bytes]) -> dict[str, Any]:
                response = client.post("/api/v1/telemetry/backfill", content=b"\n".join(lines) + b"\n",
                                       headers=ndjson_headers)  # fmt: skip
                if response.status_code != 200:
                    raise SystemExit(f"{kind} backfill: {response.status_code} {response.text[:300]}")
                return dict(response.json())

            def batches(lines: list[bytes]) -> int:
                accepted = 0
                for i in range(0, len(lines), BATCH):
                    body = b'{"events":[' + b",".join(lines[i : i + BATCH]) + b"]}"
                    response = client.post(
                        "/api/v1/telemetry/batch",
                        content=body,
                        headers={**auth, "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
                    )
                    if response.status_code != 202:
                        raise SystemExit(f"{kind} batch: {response.status_code} {response.text[:300]}")
                    accepted += int(response.json()["accepted"])
                return accepted

            # Warm-up: pool, code paths, the first allocations of either path.
            upload(warm_lines[:1000])
            batches(warm_lines[1000:])

            def timed_batches(lines: list[bytes]) -> float:
                t0 = time.perf_counter()
                accepted = batches(lines)
                seconds = time.perf_counter() - t0
                if accepted != EVENTS:
                    raise SystemExit(f"{kind} batch: {accepted} of {EVENTS} accepted")
                return seconds

            def timed_upload(lines: list[bytes]) -> float:
                t0 = time.perf_counter()
                answer = upload(lines)
                seconds = time.perf_counter() - t0
                if answer["accepted"] != EVENTS or len(answer["results"]) != EVENTS:
                    raise SystemExit(f"{kind} backfill: {answer['accepted']} of {EVENTS} accepted")
                return seconds

            # ABBA: batch, backfill, backfill, batch (and so on), so a drift in the machine's speed
            # (other work on its two cores) weighs on both alike.
            batch_seconds = backfill_seconds = 0.0
            for n in range(ROUNDS):
                if n % 2 == 0:
                    batch_seconds += timed_batches(batch_lines[n])
                    backfill_seconds += timed_upload(backfill_lines[n])
                else:
                    backfill_seconds += timed_upload(backfill_lines[n])
                    batch_seconds += timed_batches(batch_lines[n])

            small_growth, small = peak_growth_mib(proc.pid, lambda: upload(small_lines))
            big_growth, big = peak_growth_mib(proc.pid, lambda: upload(big_lines))
            if small["accepted"] != SMALL or big["accepted"] != EVENTS:
                raise SystemExit(f"{kind} memory uploads: {small['accepted']}, {big['accepted']} accepted")
        stored = TelemetryWindowEvent.objects.filter(mission__carrier=carrier).count()
        connection.close()
    expected = len(warm_lines) + 2 * ROUNDS * EVENTS + SMALL + EVENTS  # every acknowledged event is stored
    if stored != expected:
        raise SystemExit(f"{kind}: {stored:,} window rows, {expected:,} events acknowledged")
    return {
        "batch": ROUNDS * EVENTS / batch_seconds,
        "backfill": ROUNDS * EVENTS / backfill_seconds,
        "small_growth": small_growth,
        "big_growth": big_growth,
    }


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_backfill: skipped, needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        return 0
    if not Path("/proc/self/clear_refs").exists():
        print("bench_backfill: needs Linux /proc (clear_refs) for the memory figure")
        return 1
    from benchmarks._server import django_setup, throwaway_database

    django_setup(url)
    import importlib.util

    from missions.events import Actor
    from missions.models import Carrier
    from missions.partner.services import partner_client_create

    servers = ["gunicorn", "daphne"] if importlib.util.find_spec("gunicorn") is not None else ["daphne"]
    print(f"{EVENTS:,} events ({VEHICLES} vehicles, 1 Hz) per upload, {ROUNDS} uploads per method (ABBA), "
          f"one client; batch: {BATCH:,} events a request")  # fmt: skip
    print(f"{'server':10} {'batch ev/s':>11} {'backfill ev/s':>14} {'ratio':>6}   "
          f"{'peak RSS growth: ' + f'{SMALL:,} lines':>28} {f'{EVENTS:,} lines':>14}")  # fmt: skip
    failed = False
    with throwaway_database("backfill") as db_url:
        for kind in servers:
            carrier = Carrier.objects.create(name=f"Bench {kind}", slug=f"bench-{kind}", kind="autonomous",
                                             max_autonomy_level=4, operating_regions=[])  # fmt: skip
            issued = partner_client_create(
                carrier_id=carrier.pk, name="bench", scopes=["telemetry:write"], actor=Actor.system("bench")
            )
            r = run_server(kind, db_url, carrier.slug, issued)
            ratio = r["backfill"] / r["batch"]
            print(f"{kind:10} {r['batch']:11,.0f} {r['backfill']:14,.0f} {ratio:6.2f}   "
                  f"{r['small_growth']:25.1f} MiB {r['big_growth']:10.1f} MiB")  # fmt: skip
            constant = r["big_growth"] <= r["small_growth"] + MEMORY_SLACK_MIB
            failed |= ratio < TARGET_RATIO or not constant
            figure(name=f"backfill NDJSON, {EVENTS // 1000}k events, {kind}", measured=r["backfill"], unit="ev/s",
                   baseline=r["batch"], baseline_name="ev/s batch endpoint, 1,000/request",
                   target=">= 80% of batch", met=ratio >= TARGET_RATIO)  # fmt: skip
            figure(name=f"backfill server peak RSS growth, {EVENTS // 1000}k lines, {kind}",
                   measured=r["big_growth"], unit="MiB", baseline=r["small_growth"],
                   baseline_name=f"MiB at {SMALL // 1000}k lines",
                   target=f"<= {SMALL // 1000}k figure + {MEMORY_SLACK_MIB:.0f} MiB", met=constant)  # fmt: skip
    print(f"target: backfill >= {TARGET_RATIO:.0%} of batch; peak memory growth independent of the number of lines")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
