#!/usr/bin/env python
"""What tracing costs on the ingest paths: the console under gunicorn with tracing off and on, in ABBA order.

A throw-away PostgreSQL database gets a carrier with a webhook secret, a partner
client (``telemetry:write``) and ``BENCH_TRACING_MISSIONS`` en-route missions.
The console is served as the README's ingest path is (``tms_console.wsgi`` under
gunicorn, 2 gthread workers, DEBUG off, psycopg pool; Redis when ``REDIS_URL`` is
set), started anew for each phase, with:

- **off**: ``OTEL_SDK_DISABLED=true``, no spans at all;
- **on**: ``OTEL_SDK_DISABLED=false``, the default sampler
  (``OTEL_TRACES_SAMPLER=parentbased_always_on``: every request is traced) and
  no OTLP endpoint, so spans go to the embedded span store in the same database:
  the deployment without a collector;
- **ratio**: the setting the README recommends for the ingest service,
  ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` with ``BENCH_TRACING_RATIO``
  (0.1): a tenth of the requests that arrive without a trace start one, a request
  whose caller traces it follows the caller's decision;
- with ``BENCH_TRACING_UNSAMPLED=1``, a fourth for diagnosis, **unsampled**: the SDK
  and the instrumentations on, ``OTEL_TRACES_SAMPLER=always_off`` (nothing recorded).

The phases run in mirrored order (off, on, ratio, ratio, on, off; the diagnosis
in the middle when asked for), so a drift in the machine's speed (other work on its two
cores) weighs on both alike. In each phase, after a warm-up, ``BENCH_TRACING_SECONDS``
of each:

- **batch ingest**: ``BENCH_TRACING_STREAMS`` keep-alive clients, each with its own
  trucks, post ``/api/v1/telemetry/batch`` with a bearer token, ``BATCH`` events a
  request (each with its Idempotency-Key); events/s, every answer 202, all accepted;
- **signed webhook**: single-event Standard Webhooks deliveries from
  ``bench_webhook``'s load generator (the WSGI fast path and its group commit);
  requests/s, every answer 200 and not a duplicate.

After the servers have stopped (the SDK exports what it buffered on exit), the
stored spans are counted by the measured phase their start falls in: a tracing-on
phase with none, or any other phase with one, fails the run (a bench that measured no
tracing measured nothing), and so does an acknowledged event missing from the
window table. Printed beside them, for each load: spans per request, server
spans per request (below 1: the batch processor dropped spans), spans with no
parent that are not server spans (made by threads outside any request), the
most frequent spans, and in this process what one span costs to record and to
store. The figures are the
means over the phases; target (DESIGN.md §6): tracing on costs <= 10 %, on / off
>= 0.90, for both; each sampler's figure is reported.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port
from benchmarks._server import GUNICORN_THREADS
from benchmarks.bench_webhook import drive

SECONDS = float(os.environ.get("BENCH_TRACING_SECONDS", "15"))
STREAMS = int(os.environ.get("BENCH_TRACING_STREAMS", "4"))
MISSIONS = int(os.environ.get("BENCH_TRACING_MISSIONS", "2000"))
BATCH = 100
TARGET_RATIO = 0.90
SAMPLER = "parentbased_always_on"
RATIO = float(os.environ.get("BENCH_TRACING_RATIO", "0.1"))
# Batch bodies prepared per client and second before the clock starts (more are built on the fly if it
# runs past them); a client posts fewer than ten a second here.
PREPARED_PER_SECOND = 40


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
    # Each client its own trucks, as separate streams would be (no two batches wait on the same mission row).
    fleets = [missions[n::STREAMS] for n in range(STREAMS)]
    prepared = [batch_bodies(fleets[n], int(seconds * PREPARED_PER_SECOND) + 1, 0) for n in range(STREAMS)]
    accepted: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        done, i = 0, 0
        try:
            while time.perf_counter() < stop_at:
                body = prepared[n][i] if i < len(prepared[n]) else batch_bodies(fleets[n], 1, i * BATCH)[0]
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


VARIANTS: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "on": {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": SAMPLER},
    # The production setting for the ingest service: a tenth of new traces (what a caller traces, kept).
    "ratio": {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"},
    # Diagnosis (BENCH_TRACING_UNSAMPLED=1): the instrumentations and context, nothing recorded or stored.
    "unsampled": {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": "always_off"},
}


@dataclass
class Slot:
    """One measured phase: its figures and the wall-clock windows of its two loads (spans are counted by them)."""

    variant: str
    batch: float = 0.0
    webhook: float = 0.0
    webhook_p99: float = 0.0
    batch_requests: int = 0
    deliveries: int = 0
    acknowledged: int = 0
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds the server's processes used during each load


def variant_env(db_url: str, variant: str) -> dict[str, str]:
    from benchmarks._server import server_env

    # No safety ticker: it would raise lost comms for trucks that go quiet between phases.
    env = server_env(db_url, SAFETY_TICKER="0", **VARIANTS[variant])
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG",
                 "OTEL_SERVICE_NAME", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_SCHEDULE_DELAY"):  # fmt: skip
        env.pop(name, None)  # the embedded span store, the SDK's default batching
    if variant == "off":
        env.pop("OTEL_TRACES_SAMPLER", None)
    if variant == "ratio":
        env["OTEL_TRACES_SAMPLER_ARG"] = str(RATIO)
    return env


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and every process under it, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(slot: Slot, port: int, token: str, secret: str, missions: list[dict[str, Any]], server: int) -> None:
    t0, cpu0 = datetime.now(UTC), tree_cpu_seconds(server)
    slot.batch, batch_events = drive_batches(port, token, SECONDS, missions)
    slot.windows["batch"] = (t0, datetime.now(UTC))
    slot.cpu["batch"] = tree_cpu_seconds(server) - cpu0
    cpu0 = tree_cpu_seconds(server)
    t0 = datetime.now(UTC)  # the webhook load prepares its deliveries first: no request in the meantime
    slot.webhook, slot.webhook_p99, slot.deliveries = drive(port, "webhook", SECONDS, secret, missions)
    slot.windows["webhook"] = (t0, datetime.now(UTC))
    slot.cpu["webhook"] = tree_cpu_seconds(server) - cpu0
    slot.batch_requests = batch_events // BATCH
    slot.acknowledged = batch_events + slot.deliveries


def exporter_cost(count: int = 2048) -> tuple[float, float]:
    """(µs to start and end one recording span into a batch processor, µs to store one span), in this process.

    The spans look like the webhook fast path's (a server span with the carrier and the status).
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from tms_console.trace_store import StoreSpanExporter

    os.environ["OTEL_SDK_DISABLED"] = "false"
    attributes: dict[str, str | int] = {"tms.carrier": "bench", "http.response.status_code": 200}
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "partner-ingest"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for _ in range(count):
        with tracer.start_as_current_span("POST /api/v1/webhooks/{slug}", kind=SpanKind.SERVER) as span:
            span.set_attributes(attributes)
    spans = list(memory.get_finished_spans())
    store = StoreSpanExporter()
    t0 = time.perf_counter()
    for i in range(0, len(spans), 512):  # the batch processor's default export batch
        store.export(spans[i : i + 512])
    store_us = (time.perf_counter() - t0) / len(spans) * 1e6
    batching = TracerProvider(resource=Resource.create({"service.name": "partner-ingest"}))
    batching.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    tracer = batching.get_tracer("bench")
    t0 = time.perf_counter()
    for _ in range(count):
        with tracer.start_as_current_span("POST /api/v1/webhooks/{slug}", kind=SpanKind.SERVER) as span:
            span.set_attributes(attributes)
    span_us = (time.perf_counter() - t0) / count * 1e6
    batching.shutdown()
    provider.shutdown()
    return span_us, store_us


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
    import httpx
    from django.db import connection
    from django.db.models import Count, Q

    from benchmarks._server import served
    from missions.events import Actor
    from missions.models import Carrier
    from missions.models.telemetry import TelemetryWindowEvent
    from missions.partner import services as partner_services
    from tms_console.models import TraceSpan

    variants = ["off", "on", "ratio"] + (["unsampled"] if os.environ.get("BENCH_TRACING_UNSAMPLED") == "1" else [])
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
        connection.close()
        redis = "Redis" if os.environ.get("REDIS_URL") else "no Redis (rate limits in the database)"
        order = variants + variants[::-1]  # ABBA (ABCCBA with the diagnosis)
        print(f"gunicorn (tms_console.wsgi), 2 gthread workers x {GUNICORN_THREADS} threads, started anew for each "
              f"phase; PostgreSQL, {redis}")  # fmt: skip
        print(f"tracing on: OTEL_SDK_DISABLED=false, OTEL_TRACES_SAMPLER={SAMPLER} (every request traced), "
              "no OTLP endpoint: spans to the embedded span store in the same database")  # fmt: skip
        print(f"phases {', '.join(order)}; in each {SECONDS:.0f} s of "
              f"batch ingest ({STREAMS} clients x {BATCH} events a request) then {SECONDS:.0f} s of signed "
              "webhooks (bench_webhook's load, 1 event a delivery)")  # fmt: skip
        slots: list[Slot] = []
        events_before = TelemetryWindowEvent.objects.count()
        connection.close()
        warm = 0
        print(f"{'phase':10} {'batch ev/s':>11} {'webhook req/s':>14} {'webhook p99 ms':>15}")
        for variant in order:
            port = free_port()
            with served("gunicorn", port, variant_env(db_url, variant)) as server:
                token = httpx.post(
                    f"http://127.0.0.1:{port}/oauth2/token",
                    data={"grant_type": "client_credentials", "scope": "telemetry:write"},
                    auth=(issued.client_id, issued.client_secret),
                ).json()["access_token"]
                # Warm-up: pool, code paths, the span processor's thread.
                warm += drive_batches(port, token, 1.0, missions)[1]
                warm += drive(port, "webhook", 1.0, secret, missions)[2]
                slot = Slot(variant)
                measure(slot, port, token, secret, missions, server.pid)
                slots.append(slot)
            print(f"{variant:10} {slot.batch:11,.0f} {slot.webhook:14,.0f} {slot.webhook_p99:15.1f}")
        # The servers have exited: their span processors exported what they held.
        stored = TelemetryWindowEvent.objects.count() - events_before
        acknowledged = warm + sum(slot.acknowledged for slot in slots)
        if stored != acknowledged:  # every 202 / 200 said its events were stored
            failures.append(f"{acknowledged:,} events acknowledged, {stored:,} in the window table")
        print(f"{'spans started while a load ran':34} {'requests':>9} {'spans':>8} {'per request':>12} "
              f"{'server spans / requests':>24} {'parentless others / requests':>29}")  # fmt: skip
        for slot in slots:
            for load, requests in (("batch", slot.batch_requests), ("webhook", slot.deliveries)):
                start, end = slot.windows[load]
                in_window = TraceSpan.objects.filter(started_at__gte=start, started_at__lt=end)
                spans = in_window.count()
                servers = in_window.filter(kind="server").count()
                # Spans of threads that carry no request's context: traces of one span each.
                orphans = in_window.filter(parent_span_id="").exclude(kind="server").count()
                print(f"  {slot.variant + ', ' + load:32} {requests:9,} {spans:8,} {spans / max(requests, 1):12.2f} "
                      f"{servers / max(requests, 1):24.2f} {orphans / max(requests, 1):29.2f}")  # fmt: skip
                if slot.variant in ("on", "ratio") and spans == 0:
                    failures.append(f"a tracing-on phase stored no span during its {load} load: it measured nothing")
                if slot.variant in ("off", "unsampled") and spans != 0:
                    failures.append(f"a {slot.variant} phase stored {spans:,} spans")
        for load in ("batch", "webhook"):
            during = Q()
            for slot in slots:
                if slot.variant == "on":
                    during |= Q(started_at__gte=slot.windows[load][0], started_at__lt=slot.windows[load][1])
            common = TraceSpan.objects.filter(during).values("kind", "name").annotate(n=Count("id")).order_by("-n")
            print(f"  most frequent spans during the {load} load: "
                  + "; ".join(f"{r['kind']} {r['name']!r} x{r['n']:,}" for r in common[:8]))  # fmt: skip
        span_us, store_us = exporter_cost()
        print(f"  in this process: a recording span started and ended into the batch processor {span_us:.0f} µs; "
              f"storing one span (batches of 512) {store_us:.0f} µs")  # fmt: skip
        connection.close()

    def mean(variant: str, key: str) -> float:
        picked = [getattr(slot, key) for slot in slots if slot.variant == variant]
        return float(sum(picked) / len(picked))

    sampled_head = f"ratio {RATIO:g}"
    print(f"{'figure':34} {'tracing off':>12} {'tracing on':>11} {'on / off':>9} {sampled_head:>10} {'/ off':>6}" +
          (f" {'unsampled':>10} {'/ off':>6}" if "unsampled" in variants else ""))  # fmt: skip
    for key, label, unit in (("batch", "batch ingest, 100 events/request", "ev/s"),
                             ("webhook", "signed webhook, 1 event", "req/s")):  # fmt: skip
        off, on = mean("off", key), mean("on", key)
        ratio = on / off
        sampled = mean("ratio", key)
        line = f"{label:34} {off:12,.0f} {on:11,.0f} {ratio:9.2f} {sampled:10,.0f} {sampled / off:6.2f}"
        if "unsampled" in variants:
            unsampled = mean("unsampled", key)
            line += f" {unsampled:10,.0f} {unsampled / off:6.2f}"
        print(line)
        figure(name=f"tracing on, {label}, gunicorn", measured=on, unit=unit, baseline=off,
               baseline_name=f"{unit} tracing off", target=">= 90% of tracing off",
               met=ratio >= TARGET_RATIO)  # fmt: skip
        figure(name=f"tracing at ratio {RATIO:g}, {label}, gunicorn", measured=sampled, unit=unit, baseline=off,
               baseline_name=f"{unit} tracing off", target=">= 90% of tracing off",
               met=sampled / off >= TARGET_RATIO)  # fmt: skip
    # Less sensitive to other work on the machine than a throughput: what the server's processes spent.
    print("server CPU (gunicorn master and workers) per unit of work, mean over the phases:")
    for key, unit, count in (("batch", "1,000 events", lambda s: s.batch_requests * BATCH / 1000),
                             ("webhook", "1,000 deliveries", lambda s: s.deliveries / 1000)):  # fmt: skip
        costs = {}
        for variant in variants:
            picked = [slot.cpu[key] / max(count(slot), 1e-9) for slot in slots if slot.variant == variant]
            costs[variant] = sum(picked) / len(picked)
        print(
            f"  {key:8} CPU s per {unit}: "
            + ", ".join(f"{variant} {cost:.3f} ({cost / costs['off']:.2f}x off)" for variant, cost in costs.items())
        )
    print(f"target (DESIGN.md §6): tracing on costs <= 10 % (on / off >= {TARGET_RATIO:.2f}) on ingest and webhooks")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
