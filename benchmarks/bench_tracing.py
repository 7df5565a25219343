#!/usr/bin/env python
"""What tracing costs on the ingest paths: the console under gunicorn with tracing off and on, ABBA.

A throw-away PostgreSQL database gets a carrier with a webhook secret, a partner
client (``telemetry:write``) and ``BENCH_TRACING_MISSIONS`` en-route missions.
The console is served as the README's ingest path is (``tms_console.wsgi`` under
gunicorn, 2 gthread workers, DEBUG off, psycopg pool; Redis when ``REDIS_URL`` is
set) four times, in the order off, on, on, off, so a drift in the machine's speed
weighs on both alike:

- **off**: ``OTEL_SDK_DISABLED=true``, no spans at all;
- **on**: ``OTEL_SDK_DISABLED=false``, the default sampler
  (``OTEL_TRACES_SAMPLER=parentbased_always_on``, so every request is traced) and
  no OTLP endpoint, so spans go to the embedded span store in the same database:
  the deployment without a collector.

In each phase, after a warm-up, two figures for ``BENCH_TRACING_SECONDS`` each:

- **batch ingest**: ``BENCH_TRACING_STREAMS`` keep-alive clients post
  ``/api/v1/telemetry/batch`` with a bearer token, ``BATCH`` events a request
  (each with its Idempotency-Key); events/s, every answer 202 with all accepted;
- **signed webhook**: single-event Standard Webhooks deliveries from
  ``bench_webhook``'s load generator (the WSGI fast path and its group commit);
  requests/s, every answer 200 and not a duplicate.

Each phase starts with an empty span store; after its server has stopped (the SDK
exports what it buffered on exit) the stored spans are counted: an "on" phase
that stored none, or an "off" phase that stored any, fails the run, and so does
an acknowledged event that is not in the window table. The figures are the means
of the two phases of each kind; target (DESIGN.md §6): tracing on costs <= 10 %,
ratio on / off >= 0.90, for both.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_tracing.py
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port
from benchmarks.bench_webhook import drive

SECONDS = float(os.environ.get("BENCH_TRACING_SECONDS", "7"))
STREAMS = int(os.environ.get("BENCH_TRACING_STREAMS", "4"))
MISSIONS = int(os.environ.get("BENCH_TRACING_MISSIONS", "2000"))
BATCH = 100
TARGET_RATIO = 0.90
SAMPLER = "parentbased_always_on"
# Batch bodies prepared per client before the clock starts (more are built on the fly if it runs past them).
PREPARED_BATCHES = int(SECONDS * 40)
PHASES = ("off", "on", "on", "off")


def _event(m: dict[str, Any], ts: str) -> dict[str, Any]:
    return {
        "schema_version": "1", "event_id": str(uuid.uuid4()), "mission_id": m["id"], "vehicle_id": m["vehicle"],
        "ts": ts, "position": {"lat": 31.5, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0},
        "connectivity": {"uplink": "5g", "latency_ms": 40}, "autonomy_mode": "autonomous",
    }  # fmt: skip


def batch_bodies(missions: list[dict[str, Any]], count: int, offset: int) -> list[bytes]:
    """``count`` request bodies of ``BATCH`` events each, timestamped now, spread over the fleet."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    bodies = []
    for n in range(count):
        events = [_event(missions[(offset + n * BATCH + i) % len(missions)], ts) for i in range(BATCH)]
        bodies.append(json.dumps({"events": events}, separators=(",", ":")).encode())
    return bodies


def drive_batches(port: int, token: str, seconds: float, missions: list[dict[str, Any]]) -> tuple[float, int]:
    """Events/s and events accepted from STREAMS keep-alive clients posting batches for ``seconds``."""
    prepared = [batch_bodies(missions, PREPARED_BATCHES, n * 7919) for n in range(STREAMS)]
    accepted: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        done, i = 0, 0
        try:
            while time.perf_counter() < stop_at:
                body = prepared[n][i] if i < len(prepared[n]) else batch_bodies(missions, 1, n * 7919 + i)[0]
                i += 1
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                           "Idempotency-Key": str(uuid.uuid4())}  # fmt: skip
                conn.request("POST", "/api/v1/telemetry/batch", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.status != 202:
                    raise RuntimeError(f"{response.status} {data[:300]!r}")
                got = int(json.loads(data)["accepted"])
                if got != BATCH:
                    raise RuntimeError(f"{got} of {BATCH} events accepted: {data[:300]!r}")
                done += got
        except Exception as exc:  # reported, the run fails
            with lock:
                errors.append(repr(exc))
        finally:
            conn.close()
            with lock:
                accepted.append(done)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"batch: {errors[0]}")
    return sum(accepted) / elapsed, sum(accepted)


def span_store_clear() -> None:
    from django.db import connection

    from tms_console.models import TraceLink, TraceSpan

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TraceLink._meta.db_table}, {TraceSpan._meta.db_table}")


def span_summary(limit: int = 8) -> list[tuple[str, str, int]]:
    """The most frequent stored spans: (kind, name, count)."""
    from django.db.models import Count

    from tms_console.models import TraceSpan

    rows = TraceSpan.objects.values("kind", "name").annotate(n=Count("id")).order_by("-n")[:limit]
    return [(str(r["kind"]), str(r["name"]), int(r["n"])) for r in rows]


def run_phase(
    tracing_on: bool, db_url: str, issued: Any, secret: str, missions: list[dict[str, Any]]
) -> dict[str, Any]:
    import httpx
    from django.db import connection

    from benchmarks._server import served, server_env
    from missions.models.telemetry import TelemetryWindowEvent
    from tms_console.models import TraceSpan

    span_store_clear()
    events_before = TelemetryWindowEvent.objects.count()
    connection.close()
    otel = {"OTEL_SDK_DISABLED": "false" if tracing_on else "true", "OTEL_TRACES_SAMPLER": SAMPLER}
    # No safety ticker: it would raise lost comms for trucks that go quiet between phases.
    env = server_env(db_url, SAFETY_TICKER="0", **otel)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG"):
        env.pop(name, None)  # the embedded span store, every request sampled
    port = free_port()
    with served("gunicorn", port, env):
        token = httpx.post(
            f"http://127.0.0.1:{port}/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "telemetry:write"},
            auth=(issued.client_id, issued.client_secret),
        ).json()["access_token"]
        # Warm-up: pool, code paths, the span processor's thread.
        _, warm_events = drive_batches(port, token, 1.0, missions)
        _, _, warm_deliveries = drive(port, "webhook", 1.0, secret, missions)
        batch_evps, batch_events = drive_batches(port, token, SECONDS, missions)
        webhook_rps, webhook_p99, deliveries = drive(port, "webhook", SECONDS, secret, missions)
    # The server has exited: its span processors exported what they held.
    spans = TraceSpan.objects.count()
    stored = TelemetryWindowEvent.objects.count() - events_before
    summary = span_summary() if spans else []
    connection.close()
    return {
        "batch": batch_evps,
        "webhook": webhook_rps,
        "webhook_p99": webhook_p99,
        "batch_requests": batch_events // BATCH,
        "deliveries": deliveries,
        # Every 202 / 200 answer said its events were stored: all of them must be in the window table.
        "acknowledged": warm_events + warm_deliveries + batch_events + deliveries,
        "stored": stored,
        "spans": spans,
        "summary": summary,
    }


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_tracing: skipped, needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        return 0
    import importlib.util

    if importlib.util.find_spec("gunicorn") is None:
        print("bench_tracing: needs gunicorn (the ingest path it measures)")
        return 1
    from benchmarks._server import django_setup, fleet_create, throwaway_database

    django_setup(url)
    from missions.events import Actor
    from missions.models import Carrier
    from missions.partner import services as partner_services

    failures: list[str] = []
    with throwaway_database("tracing") as db_url:
        carrier = Carrier.objects.create(name="Bench Traced", slug="bench", kind="autonomous",
                                         max_autonomy_level=4, operating_regions=[])  # fmt: skip
        secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("bench")).secret
        issued = partner_services.partner_client_create(
            carrier_id=carrier.pk, name="bench", scopes=["telemetry:write"], actor=Actor.system("bench")
        )
        missions = [
            {"id": m.pk, "vehicle": m.vehicle.external_id, "path": f"/api/v1/webhooks/{carrier.slug}"}
            for m in fleet_create(carrier, MISSIONS)
        ]
        redis = "Redis" if os.environ.get("REDIS_URL") else "no Redis (rate limits in the database)"
        print(f"gunicorn (tms_console.wsgi), 2 gthread workers; PostgreSQL, {redis}; phases {', '.join(PHASES)}")
        print(f"tracing on: OTEL_SDK_DISABLED=false, OTEL_TRACES_SAMPLER={SAMPLER}, spans to the embedded span store")
        print(f"batch: {STREAMS} clients x {BATCH} events a request; webhook: bench_webhook's load, 1 event a "
              f"delivery; {SECONDS:.0f} s each per phase")  # fmt: skip
        print(f"{'phase':6} {'batch ev/s':>11} {'webhook req/s':>14} {'webhook p99 ms':>15} "
              f"{'requests':>9} {'spans stored':>13} {'spans/request':>14}")  # fmt: skip
        results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for phase in PHASES:
            r = run_phase(phase == "on", db_url, issued, secret, missions)
            results[phase].append(r)
            requests = r["batch_requests"] + r["deliveries"]
            print(f"{phase:6} {r['batch']:11,.0f} {r['webhook']:14,.0f} {r['webhook_p99']:15.1f} "
                  f"{requests:9,} {r['spans']:13,} {r['spans'] / max(requests, 1):14.2f}")  # fmt: skip
            if r["stored"] != r["acknowledged"]:
                failures.append(f"{phase}: {r['acknowledged']:,} events acknowledged, {r['stored']:,} stored")
            if phase == "on" and r["spans"] == 0:
                failures.append("a tracing-on phase stored no span: it measured nothing")
            if phase == "off" and r["spans"] != 0:
                failures.append(f"a tracing-off phase stored {r['spans']:,} spans")
        for r in results["on"]:
            print("  stored spans of an 'on' phase, most frequent: "
                  + "; ".join(f"{kind} {name!r} x{n:,}" for kind, name, n in r["summary"]))  # fmt: skip

    def mean(kind: str, key: str) -> float:
        return float(sum(r[key] for r in results[kind]) / len(results[kind]))

    print(f"{'figure':32} {'tracing off':>12} {'tracing on':>12} {'on / off':>9}")
    for key, label, unit in (("batch", "batch ingest, 100 events/request", "ev/s"),
                             ("webhook", "signed webhook, 1 event", "req/s")):  # fmt: skip
        off, on = mean("off", key), mean("on", key)
        ratio = on / off
        print(f"{label:32} {off:12,.0f} {on:12,.0f} {ratio:9.2f}")
        figure(name=f"tracing on, {label}, gunicorn", measured=on, unit=unit, baseline=off,
               baseline_name=f"{unit} tracing off", target=">= 90% of tracing off",
               met=ratio >= TARGET_RATIO)  # fmt: skip
    print(f"target (DESIGN.md §6): tracing on costs <= 10 % (on / off >= {TARGET_RATIO:.2f}) on ingest and webhooks")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
