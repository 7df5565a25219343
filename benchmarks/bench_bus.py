#!/usr/bin/env python
"""The event-bus relay on PostgreSQL and NATS JetStream, next to a raw nats-py publish loop.

1. Baseline: a raw publish loop, ``publish_async`` in batches of
   ``BUS_BATCH_SIZE`` with every batch's acks awaited, messages shaped like
   our CloudEvents (about 600 bytes, a ``Nats-Msg-Id`` each): msgs/s.
2. The relay (``missions.bus.relay.Relay``, in this process) publishing
   ``BENCH_BUS_EVENTS`` events (default 50,000) already in the table, read,
   enveloped, published and acknowledged, cursor moved: events/s. Target
   (DESIGN.md §6): >= 50 % of the raw loop. The two alternate over
   ``BENCH_BUS_ROUNDS`` rounds (default 3; each relay round starts from an
   empty stream and a cursor at 0) and the best of each is compared, so a
   burst of other work on the machine during one pass does not decide the ratio.
3. End-to-end lag while a fleet of ``BENCH_BUS_TRUCKS`` trucks (default
   10,000) reports at 1 Hz through ``ingest_events`` (another process) and
   events are recorded: the relay runs as ``manage.py events_relay`` and a
   subscriber measures, per message, now minus the CloudEvent ``time`` (an
   event) or minus the newest sample's ``ts`` (a telemetry batch): p50/p99.
   The rate the load reached is printed; on a 2-core machine shared by the
   load, the relay, PostgreSQL, NATS and the subscriber it may fall short of
   10,000 events/s, and the figure says so.

Its own nats-server (free port, temporary store) is started and killed here;
the database is a throw-away ``<name>_bench_bus``.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_bus.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchmarks._report import figure, free_port, percentile  # noqa: E402

EVENTS = int(os.environ.get("BENCH_BUS_EVENTS", "50000"))
RAW_MESSAGES = int(os.environ.get("BENCH_BUS_RAW", "50000"))
ROUNDS = max(1, int(os.environ.get("BENCH_BUS_ROUNDS", "3")))
TRUCKS = int(os.environ.get("BENCH_BUS_TRUCKS", "10000"))
LOAD_SECONDS = int(os.environ.get("BENCH_BUS_LOAD_SECONDS", "20"))
EVENTS_PER_SECOND_RECORDED = 20  # domain events recorded beside the telemetry during the lag phase
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_bus: skipped, needs PostgreSQL (set DATABASE_URL or BENCH_DATABASE_URL to a postgres:// URL)")
        return 0
    if not os.path.exists(NATS_SERVER):
        print("bench_bus: skipped, needs nats-server")
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
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{old_name}_bench_bus"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    store = Path(tempfile.mkdtemp(prefix="bench-bus-nats-"))
    port = free_port()
    nats = subprocess.Popen(
        [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        return run(url.rsplit("/", 1)[0] + f"/{name}", f"nats://127.0.0.1:{port}")
    finally:
        nats.send_signal(signal.SIGKILL)
        nats.wait()
        shutil.rmtree(store, ignore_errors=True)
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def cloudevent_like(n: int) -> bytes:
    body = {
        "specversion": "1.0",
        "id": str(n),
        "source": "https://tms.example/events",
        "type": "com.tms.mission.status_changed.v1",
        "subject": f"mission/{n % 5000}",
        "time": datetime.now(tz=UTC).isoformat(),
        "datacontenttype": "application/json",
        "correlationid": str(uuid.uuid4()),
        "data": {
            "id": n, "action": "mission.status_changed", "subject_type": "mission", "subject_id": n % 5000,
            "actor": {"kind": "carrier", "label": "Bench carrier"}, "before": {"status": "assigned"},
            "after": {"status": "en_route"}, "data": {"reason": "departed", "n": n},
            "mission_id": n % 5000, "shipment_id": n % 5000, "carrier": "bench",
        },
    }  # fmt: skip
    return json.dumps(body).encode()


def raw_publish(nats_url: str, batch: int, round_: int) -> float:
    """Messages per second of a bare publish loop, acks awaited per batch (a fresh stream each round)."""

    async def loop() -> float:
        import nats

        nc = await nats.connect(nats_url)
        js = nc.jetstream(timeout=30)
        stream, subject = f"RAW{round_}", f"raw{round_}.events.bench.mission.status_changed"
        await js.add_stream(name=stream, subjects=[f"raw{round_}.>"], duplicate_window=900)
        payloads = [cloudevent_like(n) for n in range(RAW_MESSAGES)]
        t0 = time.perf_counter()
        for start in range(0, RAW_MESSAGES, batch):
            futures = [
                await js.publish_async(subject, payloads[n], stream=stream,
                                       headers={"Nats-Msg-Id": str(n)})
                for n in range(start, min(start + batch, RAW_MESSAGES))
            ]  # fmt: skip
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
        await js.delete_stream(stream)
        await nc.close()
        print(f"  raw: {RAW_MESSAGES} messages of ~{len(payloads[0])} bytes in {elapsed:.2f} s")
        return RAW_MESSAGES / elapsed

    return asyncio.run(loop())


def events_bulk(missions: list[Any], count: int) -> None:
    from django.utils import timezone

    from missions.choices import ActorKind
    from missions.models import AuditEvent

    now = timezone.now()
    AuditEvent.objects.bulk_create(
        (
            AuditEvent(occurred_at=now, actor_kind=ActorKind.CARRIER, actor_label="Bench carrier",
                       action="mission.status_changed", subject_type="mission",
                       subject_id=missions[n % len(missions)].pk,
                       before={"status": "assigned"}, after={"status": "en_route"}, data={"reason": "departed", "n": n},
                       mission=missions[n % len(missions)], carrier=missions[n % len(missions)].carrier,
                       correlation_id=missions[n % len(missions)].correlation_id)
            for n in range(count)
        ),
        batch_size=5000,
    )  # fmt: skip


def relay_drain(nats_url: str) -> tuple[float, int]:
    """Events per second of the in-process relay over the rows already in the table."""
    from django.conf import settings

    from missions.bus.publisher import NatsPublisher
    from missions.bus.relay import EVENTS as CURSOR
    from missions.bus.relay import Relay, cursor_get, stream_specs
    from missions.models import AuditEvent
    from missions.models.bus import BusCursor

    async def empty_stream() -> None:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(nats_url)
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(settings.BUS_EVENTS_STREAM)
        await nc.close()

    asyncio.run(empty_stream())
    BusCursor.objects.filter(name=CURSOR).delete()
    publisher = NatsPublisher(nats_url, timeout_seconds=30)
    relay = Relay(publisher)
    publisher.ensure_streams(stream_specs())
    newest = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    published = 0
    t0 = time.perf_counter()
    while cursor_get(CURSOR).position < newest:
        published += relay.events_round()
    elapsed = time.perf_counter() - t0
    relay.read_ahead.close()
    publisher.close()
    print(f"  relay: {published} events in {elapsed:.2f} s")
    return published / elapsed, published


def load_worker(db_url: str, seconds: int, out: Any) -> None:
    """The fleet at 1 Hz through ingest_events, and a few domain events a second; the rates reached."""
    os.environ["DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tms_console.settings_test"
    os.environ["DB_POOL"] = "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.db import transaction

    from missions.events import Actor, event_record
    from missions.models import Carrier, Mission
    from missions.telemetry.ingest import MissionCache, ingest_events, telemetry_batch_max

    carrier = Carrier.objects.get(slug="bench-fleet")
    missions = list(Mission.objects.filter(carrier=carrier).select_related("vehicle", "carrier"))
    cache = MissionCache()
    actor = Actor.system("bench")
    limit = telemetry_batch_max()
    accepted = recorded = 0
    t0 = time.monotonic()
    for second in range(seconds):
        stamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        events = [
            {"schema_version": "1", "event_id": str(uuid.uuid4()), "mission_id": m.pk,
             "vehicle_id": m.vehicle.external_id, "correlation_id": str(m.correlation_id), "ts": stamp,
             "position": {"lat": 30.0 + (i % 500) / 100, "lon": -97.0 + (i // 500) / 10, "speed_kph": 88.5,
                          "heading_deg": 171.0},
             "mission_state": "en_route", "autonomy_mode": "autonomous"}
            for i, m in enumerate(missions)
        ]  # fmt: skip
        for start in range(0, len(events), limit):
            accepted += ingest_events(
                carrier=carrier, events=events[start : start + limit], source="bench", cache=cache
            ).accepted
        with transaction.atomic():
            for n in range(EVENTS_PER_SECOND_RECORDED):
                m = missions[(second * EVENTS_PER_SECOND_RECORDED + n) % len(missions)]
                event_record(actor=actor, action="mission.status_changed", subject_type="mission", subject_id=m.pk,
                             mission=m, carrier=carrier, data={"n": n})  # fmt: skip
                recorded += 1
        # 1 Hz: wait for the next second if this one was done early.
        behind = (second + 1) - (time.monotonic() - t0)
        if behind > 0:
            time.sleep(behind)
    elapsed = time.monotonic() - t0
    out.put({"telemetry_per_s": accepted / elapsed, "events_per_s": recorded / elapsed, "seconds": elapsed})


class Subscriber:
    """A core-NATS subscriber on every bus subject, recording now - the message's time, in seconds."""

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.event_lags: list[float] = []
        self.telemetry_lags: list[float] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import nats

        nc = await nats.connect(self.nats_url)

        async def on_message(msg: Any) -> None:
            now = datetime.now(tz=UTC)
            event = json.loads(msg.data)
            if event["type"].startswith("com.tms.telemetry"):
                newest = max(s["ts"] for s in event["data"]["samples"])
                self.telemetry_lags.append(
                    (now - datetime.fromisoformat(newest.replace("Z", "+00:00"))).total_seconds()
                )
            else:
                sent = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
                self.event_lags.append((now - sent).total_seconds())

        await nc.subscribe("tms.>", cb=on_message)
        await nc.flush()
        self.ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        await nc.close()


def lag_phase(db_url: str, nats_url: str) -> dict[str, Any]:
    from django.db import connection

    from benchmarks._server import fleet_create
    from missions.models import AuditEvent, TelemetrySample
    from missions.models.bus import BusCursor
    from tests.factories import CarrierFactory

    carrier = CarrierFactory(slug="bench-fleet", name="Bench fleet")
    fleet_create(carrier, TRUCKS)
    # The relay starts at the end of the tables: this phase measures new rows only.
    for name, model in (("events", AuditEvent), ("telemetry", TelemetrySample)):
        newest = model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        BusCursor.objects.update_or_create(name=name, defaults={"position": newest})
    connection.close()

    subscriber = Subscriber(nats_url)
    subscriber.thread.start()
    subscriber.ready.wait(10)
    env = {**os.environ, "DATABASE_URL": db_url, "NATS_URL": nats_url, "LOG_LEVEL": "WARNING"}
    relay = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "events_relay"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(3.0)  # the relay connects and takes its lease
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        load = context.Process(target=load_worker, args=(db_url, LOAD_SECONDS, out))
        load.start()
        rates = out.get(timeout=LOAD_SECONDS * 6 + 60)
        load.join(30)
        time.sleep(3.0)  # the last rows reach the bus
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(20)
        subscriber.stop.set()
        subscriber.thread.join(10)
    return {**rates, "event_lags": subscriber.event_lags, "telemetry_lags": subscriber.telemetry_lags}


def run(db_url: str, nats_url: str) -> int:
    from django.conf import settings

    from benchmarks._server import fleet_create
    from tests.factories import CarrierFactory

    batch = int(settings.BUS_BATCH_SIZE)
    print(f"event bus: nats-server {nats_url}, PostgreSQL, batches of {batch}")
    missions = fleet_create(CarrierFactory(slug="bench", name="Bench carrier"), 200)
    events_bulk(missions, EVENTS)
    raws: list[float] = []
    relays: list[float] = []
    for round_ in range(ROUNDS):
        raws.append(raw_publish(nats_url, batch, round_))
        rate, published = relay_drain(nats_url)
        relays.append(rate)
    raw, relay_rate = max(raws), max(relays)
    ratio = relay_rate / raw
    print(
        f"raw nats-py publish loop (acks awaited per batch), best of {ROUNDS}: {raw:,.0f} msgs/s"
        f" (rounds: {', '.join(f'{r:,.0f}' for r in raws)})"
    )
    print(
        f"relay, {published:,} events already in the table, best of {ROUNDS}: {relay_rate:,.0f} events/s"
        f" ({ratio:.0%} of raw; rounds: {', '.join(f'{r:,.0f}' for r in relays)})"
    )
    figure(
        name="event-bus relay, events published and acked",
        measured=relay_rate,
        unit="events/s",
        baseline=raw,
        baseline_name="raw nats-py publish loop",
        target=">= 50% of raw",
        met=ratio >= 0.5,
    )

    phase = lag_phase(db_url, nats_url)
    events, telemetry = phase["event_lags"], phase["telemetry_lags"]
    print(
        f"load: {phase['telemetry_per_s']:,.0f} telemetry events/s ({TRUCKS:,} trucks at 1 Hz asked) and "
        f"{phase['events_per_s']:,.0f} domain events/s for {phase['seconds']:.0f} s"
    )
    for label, lags in (("event", events), ("telemetry batch", telemetry)):
        if lags:
            print(
                f"  lag, {label} messages ({len(lags):,}): p50 {percentile(lags, 50) * 1000:,.0f} ms,"
                f" p99 {percentile(lags, 99) * 1000:,.0f} ms, max {max(lags) * 1000:,.0f} ms"
            )
        else:
            print(f"  lag, {label} messages: none received")
    everything = events + telemetry
    p99 = percentile(everything, 99) * 1000 if everything else None
    figure(
        name=f"event-bus lag p99 at {phase['telemetry_per_s']:,.0f} telemetry ev/s",
        measured=p99,
        unit="ms",
        target="reported",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
