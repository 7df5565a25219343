#!/usr/bin/env python
"""Tender API latency (p50 / p99) while the fleet's telemetry is ingested, next to ``/healthz`` in the same run.

A throw-away PostgreSQL database gets a carrier with ``TENDERS`` (500) sent
tenders and ``BENCH_TENDER_TRUCKS`` (10,000) en-route missions, each with its
truck, and two partner clients: one reading tenders, one sending telemetry.
The partner API is served as ``make run`` and the partner-ingest deployment
serve it: gunicorn, ``tms_console.wsgi``, ``ProblemThreadWorker``, 2 workers x
32 threads (``scripts/run_all.py``'s command), DEBUG off, psycopg pool
(``DB_POOL_MAX`` 40 as in ``deploy/k8s/base/partner-ingest.yaml``).

A reader process (``BENCH_CONCURRENCY`` threads, 8, each on a kept-alive
connection) sends ``BENCH_TENDER_RPS`` (90) requests a second, paced, in
turn: ``GET /api/v1/tenders/<id>``, ``GET /api/v1/tenders?status=sent&page_size=25``
(a page of 25 with their shipments) and ``GET /healthz`` (one ``SELECT 1``:
what the server, the machine and the client cost without our code, under the
same load at the same moments). Phases of ``BENCH_TENDER_SECONDS`` (20 s):

1. no ingest;
2. ingest into the same server, as ``make run`` and the partner ingress route
   it (``/api/v1/`` of a pod serves both): a loader process posts
   ``BENCH_TENDER_INGEST_RATE`` (10,000) events a second to
   ``/api/v1/telemetry/batch``, every truck at 1 Hz, as batches of 100 (100
   requests a second, paced on a clock, at most ``INGEST_IN_FLIGHT``
   outstanding; a tick that finds them all busy is skipped, so a server that
   cannot keep up shows as a lower rate achieved, printed);
   Each server process works on ``TELEMETRY_BATCH_CONCURRENCY`` (2) batches at
   once and the others wait for their turn (``missions/telemetry/admission.py``);
   a 503 ``ingest-busy`` is retried after its ``Retry-After`` with the same key
   (counted and printed);
2b. the same into a server that takes every batch at once
   (``TELEMETRY_BATCH_CONCURRENCY=0``), its tenders read from it: the baseline
   of the turns, in the same run;
3. the same ingest to a second gunicorn started with the same command, as a
   separate ingest deployment would take it: on this 2-core machine it still
   shares the CPU, the database and Redis with the server measured;
4. the same, with that gunicorn and the loader (which stands for the carriers'
   own machines) at ``BENCH_TENDER_INGEST_NICE`` (10) lower CPU priority: what a
   separate ingest deployment with a smaller CPU share than the control plane's
   gives on shared cores (the database's backends keep their priority).

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/bench_tender_api.py
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port, percentile

SECONDS = float(os.environ.get("BENCH_TENDER_SECONDS", "20"))
RPS = float(os.environ.get("BENCH_TENDER_RPS", "90"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
INGEST_RATE = int(os.environ.get("BENCH_TENDER_INGEST_RATE", "10000"))
TRUCKS = int(os.environ.get("BENCH_TENDER_TRUCKS", str(max(INGEST_RATE, 1))))
BATCH = 100
# Batch requests outstanding at most; a tick that finds every sender busy is skipped (and counted).
INGEST_IN_FLIGHT = 16
TENDERS = 500
# Which phases run (all five by default): "none", "same", "same-all", "own", "own-low".
PHASES = os.environ.get("BENCH_TENDER_PHASES", "none,same,same-all,own,own-low").split(",")
INGEST_NICE = int(os.environ.get("BENCH_TENDER_INGEST_NICE", "10"))
PAGE_SIZE = 25
TARGET_MS = 50.0
WARMUP_SECONDS = 3.0
DETAIL, PAGE, HEALTHZ = "GET /api/v1/tenders/<id>", f"GET /api/v1/tenders (page of {PAGE_SIZE})", "GET /healthz"


def reader(port: int, token: str, tender_ids: list[int], seconds: float, out: Any) -> None:
    """RPS requests a second for ``seconds`` (detail, page, healthz in turn); report the latencies of each (ms)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    paths = [
        (DETAIL, lambda n: f"/api/v1/tenders/{tender_ids[n % len(tender_ids)]}", headers),
        (PAGE, lambda n: f"/api/v1/tenders?status=sent&page_size={PAGE_SIZE}", headers),
        (HEALTHZ, lambda n: "/healthz", {}),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in paths}
    late: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    interval = CONCURRENCY / RPS
    start = time.perf_counter() + 0.2

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: dict[str, list[float]] = {name: [] for name, _, _ in paths}
        behind = 0
        n = 0
        try:
            while True:
                due = start + k * interval / CONCURRENCY + n * interval
                if due - start >= seconds:
                    break
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -0.010:
                    behind += 1
                name, path, hdrs = paths[(n * CONCURRENCY + k) % len(paths)]
                t0 = time.perf_counter()
                conn.request("GET", path(n * CONCURRENCY + k), headers=hdrs)
                response = conn.getresponse()
                body = response.read()
                mine[name].append((time.perf_counter() - t0) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"{name} answered {response.status}: {body[:200]!r}")
                n += 1
        except Exception as exc:  # reported, the run fails
            with lock:
                errors.append(repr(exc))
        finally:
            conn.close()
            with lock:
                for name, values in mine.items():
                    results[name].extend(values)
                late.append(behind)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(("reader", results, sum(late), errors))


def _event(mission_id: int, vehicle: str, ts: str) -> dict[str, Any]:
    return {
        "schema_version": "1", "event_id": str(uuid.uuid4()), "mission_id": mission_id, "vehicle_id": vehicle,
        "ts": ts, "position": {"lat": 31.5, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0},
        "connectivity": {"uplink": "5g", "latency_ms": 40}, "autonomy_mode": "autonomous",
    }  # fmt: skip


def loader(
    port: int, token: str, fleet: list[tuple[int, str]], rate: int, seconds: float, out: Any, nice: int = 0
) -> None:
    if nice:
        os.nice(nice)
    """Every truck of ``fleet`` at ``rate / len(fleet)`` Hz as batches of BATCH to /api/v1/telemetry/batch, paced."""
    per_second = max(1, rate // BATCH)
    ticks: list[int] = []  # due tick numbers, taken by the senders
    cond = threading.Condition()
    sent = accepted = skipped = busy = 0
    errors: list[str] = []
    ack_ms: list[float] = []
    stop = False

    def body(tick: int) -> bytes:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        first = (tick % per_second) * BATCH
        trucks = [fleet[(first + i) % len(fleet)] for i in range(BATCH)]
        return json.dumps({"events": [_event(m, v, ts) for m, v in trucks]}, separators=(",", ":")).encode()

    def sender() -> None:
        nonlocal sent, accepted, busy
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            while True:
                with cond:
                    while not ticks and not stop:
                        cond.wait()
                    if stop and not ticks:
                        return
                    tick = ticks.pop(0)
                payload = body(tick)
                key = str(uuid.uuid4())
                t0 = time.perf_counter()
                while True:
                    conn.request("POST", "/api/v1/telemetry/batch", body=payload,
                                 headers={**headers, "Idempotency-Key": key})  # fmt: skip
                    response = conn.getresponse()
                    data = response.read()
                    if response.status != 503:
                        break
                    # ingest-busy: nothing stored; the same batch and key again after Retry-After.
                    with cond:
                        busy += 1
                    time.sleep(float(response.getheader("Retry-After") or 1))
                took = (time.perf_counter() - t0) * 1000
                if response.status != 202:
                    raise RuntimeError(f"{response.status} {data[:300]!r}")
                with cond:
                    sent += BATCH
                    accepted += int(json.loads(data)["accepted"])
                    ack_ms.append(took)
        except Exception as exc:  # reported, the run fails
            with cond:
                errors.append(repr(exc))
        finally:
            conn.close()

    senders = [threading.Thread(target=sender) for _ in range(INGEST_IN_FLIGHT)]
    for t in senders:
        t.start()
    t0 = time.perf_counter()
    tick = 0
    while time.perf_counter() - t0 < seconds:
        with cond:
            # Every sender busy and a tick already waiting: skip this one rather than queue without bound.
            if len(ticks) >= 1:
                skipped += 1
            else:
                ticks.append(tick)
                cond.notify()
        tick += 1
        time.sleep(max(0.0, t0 + tick / per_second - time.perf_counter()))
    with cond:
        stop = True
        ticks.clear()
        cond.notify_all()
    for t in senders:
        t.join(60)
    elapsed = time.perf_counter() - t0
    out.put(("loader", accepted / elapsed, sent, skipped, ack_ms, errors, busy))


def seed(carrier_slug: str = "bench") -> dict[str, Any]:
    """The carrier, its sent tenders, its fleet and two partner clients (in the throw-away database)."""
    from django.utils import timezone

    from benchmarks._server import fleet_create
    from missions import services
    from missions.events import Actor
    from missions.models import Carrier, Shipment
    from missions.partner.services import partner_client_create

    actor = Actor.system("bench")
    carrier = Carrier.objects.create(
        name="Bench Autonomous", slug=carrier_slug, kind="autonomous", max_autonomy_level=4, operating_regions=[]
    )
    reading = partner_client_create(carrier_id=carrier.pk, name="tenders", scopes=["tender:read"], actor=actor)
    sending = partner_client_create(carrier_id=carrier.pk, name="ingest", scopes=["telemetry:write"], actor=actor)
    now = timezone.now()
    tender_ids = []
    for i in range(TENDERS):
        shipment = Shipment.objects.create(
            reference=f"BENCH-T{i:05d}", origin_address="Dallas, TX", origin_region="TX", origin_lat=32.78,
            origin_lon=-96.8, destination_address="Houston, TX", destination_region="TX", destination_lat=29.76,
            destination_lon=-95.37, pickup_window_start=now, pickup_window_end=now + timezone.timedelta(hours=2),
            delivery_window_start=now + timezone.timedelta(hours=4),
            delivery_window_end=now + timezone.timedelta(hours=8), weight_kg=15000,
        )  # fmt: skip
        tender = services.tender_create(actor=actor, shipment_id=shipment.pk, carrier_id=carrier.pk,
                                        offered_price_usd=Decimal("1300"), expiry_seconds=86400)  # fmt: skip
        services.tender_mark_sent(tender_id=tender.pk, actor=actor)
        tender_ids.append(tender.pk)
    fleet = [(m.pk, m.vehicle.external_id) for m in fleet_create(carrier, TRUCKS)]
    return {"tender_ids": tender_ids, "fleet": fleet, "reading": reading, "sending": sending}


def token_of(port: int, issued: Any, scope: str) -> str:
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{port}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(issued.client_id, issued.client_secret),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def phase(
    ctx: Any, port: int, token: str, tender_ids: list[int], ingest: tuple[int, str, list[Any]] | None,
    read_seconds: float = SECONDS, nice: int = 0,
) -> Any:  # fmt: skip
    """One phase: the reader for ``read_seconds``, with the loader (to ``ingest``'s port) started before it."""
    out = ctx.Queue()
    load = None
    if ingest is not None:
        ingest_port, ingest_token, fleet = ingest
        seconds = read_seconds + WARMUP_SECONDS + 1
        load = ctx.Process(target=loader, args=(ingest_port, ingest_token, fleet, INGEST_RATE, seconds, out, nice))
        load.start()
        time.sleep(WARMUP_SECONDS)  # the load at its pace before the first request is timed
    read = ctx.Process(target=reader, args=(port, token, tender_ids, read_seconds, out))
    read.start()
    parts = {part[0]: part for part in (out.get(timeout=read_seconds + 120) for _ in range(1 + (load is not None)))}
    parts["load"] = os.getloadavg()[0]
    read.join(10)
    if load is not None:
        load.join(10)
    return parts


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_tender_api: skipped, needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        return 0
    from benchmarks._server import django_setup, served, server_env, throwaway_database

    django_setup(url)
    ctx = multiprocessing.get_context("spawn")
    t_start = time.monotonic()
    with throwaway_database("tender") as db_url:
        data = seed()
        fleet = data["fleet"]
        from django.db import connection

        connection.close()
        # As partner-ingest.yaml: the pool above the 32 threads of a worker. No safety ticker: it would open
        # lost-comms exceptions for the trucks between the phases.
        env = server_env(db_url, DB_POOL_MAX="40", SAFETY_TICKER="0")
        port, ingest_port = free_port(), free_port()
        rows: list[tuple[str, dict[str, Any], Any]] = []
        ids = data["tender_ids"]
        with served("partner", port, env):
            read_token = token_of(port, data["reading"], "tender:read")
            send_token = token_of(port, data["sending"], "telemetry:write")
            # Warm-up, not counted: every thread's connection, the pool, the code paths.
            phase(ctx, port, read_token, ids, None, read_seconds=WARMUP_SECONDS)
            if "none" in PHASES:
                rows.append(("no ingest", phase(ctx, port, read_token, ids, None), None))
            if "same" in PHASES:
                same = phase(ctx, port, read_token, ids, (port, send_token, fleet))
                rows.append(("ingest, same server", same, "same"))
            if "same-all" in PHASES:
                # The same, on a server whose processes take every batch at once (TELEMETRY_BATCH_CONCURRENCY=0):
                # what batches taking turns (missions/telemetry/admission.py) changes, in the same run.
                with served("partner", ingest_port, {**env, "TELEMETRY_BATCH_CONCURRENCY": "0"}):
                    all_read = token_of(ingest_port, data["reading"], "tender:read")
                    all_send = token_of(ingest_port, data["sending"], "telemetry:write")
                    phase(ctx, ingest_port, all_read, ids, None, read_seconds=WARMUP_SECONDS)
                    every = phase(ctx, ingest_port, all_read, ids, (ingest_port, all_send, fleet))
                    rows.append(("same, no turns", every, "same-all"))
            if "own" in PHASES:
                with served("partner", ingest_port, env):
                    own_token = token_of(ingest_port, data["sending"], "telemetry:write")
                    own = phase(ctx, port, read_token, ids, (ingest_port, own_token, fleet))
                    rows.append(("ingest, own gunicorn", own, "own"))
            if "own-low" in PHASES:
                with served("partner", ingest_port, env, nice=INGEST_NICE):
                    low_token = token_of(ingest_port, data["sending"], "telemetry:write")
                    low = phase(ctx, port, read_token, ids, (ingest_port, low_token, fleet), nice=INGEST_NICE)
                    rows.append((f"ingest, own, nice {INGEST_NICE}", low, "own-low"))
    report(rows)
    print(f"(whole run {time.monotonic() - t_start:.0f} s)")
    return 0


def report(rows: list[tuple[str, dict[str, Any], Any]]) -> None:
    print(f"tender API on gunicorn as `make run` serves it (2 ProblemThreadWorker workers x 32 threads), "
          f"PostgreSQL; {RPS:.0f} requests/s paced from {CONCURRENCY} client threads, {SECONDS:.0f} s a phase, "
          f"detail, page of {PAGE_SIZE} and /healthz in turn; ingest wanted: {INGEST_RATE:,} events/s "
          f"({TRUCKS:,} trucks, batches of {BATCH})")  # fmt: skip
    print(f"{'phase':22} {'endpoint':36} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'ingest ev/s':>12}  p99 <= {TARGET_MS:.0f} ms")  # fmt: skip
    for label, parts, where in rows:
        _, results, late, errors = parts["reader"]
        if errors:
            raise SystemExit(f"{label}: {errors[0]}")
        rate = None
        if "loader" in parts:
            _, rate, _sent, skipped, ack_ms, load_errors, busy = parts["loader"]
            if load_errors:
                raise SystemExit(f"{label}: ingest failed: {load_errors[0]}")
        # The phase without turns is the turns' baseline, not a configuration the targets are for.
        judged = where != "same-all"
        base = results[HEALTHZ]
        base50, base99 = percentile(base, 50), percentile(base, 99)
        for name in (DETAIL, PAGE, HEALTHZ):
            values = results[name]
            p50, p99 = percentile(values, 50), percentile(values, 99)
            met = p99 <= TARGET_MS
            verdict = "(baseline)" if name == HEALTHZ or not judged else ("met" if met else "NOT met")
            shown = "-" if rate is None else f"{rate:,.0f}"
            print(f"{label:22} {name:36} {len(values):5} {p50:8.1f} {p99:8.1f} {max(values):8.1f} "
                  f"{shown:>12}  {verdict}")  # fmt: skip
            if name == HEALTHZ:
                continue
            short = {DETAIL: "tender API GET <id>", PAGE: f"tender API page of {PAGE_SIZE}"}[name]
            suffix = ", no ingest" if where is None else f", ingest {where_text(where, short=True)}"
            figure(name=f"{short} p99{suffix}", measured=p99, unit="ms", baseline=base99,
                   baseline_name="ms /healthz p99", target=f"p99 <= {TARGET_MS:.0f} ms" if judged else "",
                   met=met if judged else None)  # fmt: skip
            figure(name=f"{short} p50{suffix}", measured=p50, unit="ms", baseline=base50,
                   baseline_name="ms /healthz p50")  # fmt: skip
        print(
            f"{'':22} load average {parts['load']:.1f} at the end of the phase"
            + (f"; {late} requests left more than 10 ms after their slot (the reader was behind)" if late else "")
        )
        if rate is not None:
            ack50, ack99 = (percentile(ack_ms, 50), percentile(ack_ms, 99)) if ack_ms else (0.0, 0.0)
            print(f"{'':22} ingest {where_text(where)}: {rate:,.0f} events/s achieved of {INGEST_RATE:,} wanted "
                  f"({skipped} batches skipped with {INGEST_IN_FLIGHT} in flight, {busy} answers 503 ingest-busy "
                  f"retried); batch answered p50 {ack50:.0f} ms, p99 {ack99:.0f} ms")  # fmt: skip
            figure(name=f"ingest during tender reads, {where_text(where, short=True)}", measured=rate,
                   unit="ev/s", baseline=float(INGEST_RATE), baseline_name="ev/s wanted",
                   target=">= 95 % of wanted" if judged else "",
                   met=rate >= 0.95 * INGEST_RATE if judged else None)  # fmt: skip
    print("ingest 'same server': the telemetry batches go to the gunicorn that serves the tenders, as `make run` and "
          "the partner ingress route /api/v1/ ('no turns': its processes take every batch at once, "
          "TELEMETRY_BATCH_CONCURRENCY=0); 'own gunicorn': to a second gunicorn started with the same command, "
          "as a separate ingest deployment would take them (here on the same 2 cores, database and Redis); "
          f"'nice {INGEST_NICE}': that gunicorn and the loader at a lower CPU priority, as an ingest deployment "
          "with a smaller CPU share than the control plane's")  # fmt: skip


def where_text(where: str, short: bool = False) -> str:
    if short:
        return {"same": "same server", "same-all": "same server, batches without turns", "own": "own gunicorn",
                "own-low": f"own gunicorn at nice {INGEST_NICE}"}[where]  # fmt: skip
    return {"same": "into the same gunicorn", "same-all": "into the same gunicorn, every batch at once",
            "own": "on its own gunicorn", "own-low": f"on its own gunicorn at nice {INGEST_NICE}"}[where]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
