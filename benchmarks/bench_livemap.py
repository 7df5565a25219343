#!/usr/bin/env python
"""Live map latency: telemetry event received -> frame delivered to a dashboard websocket, and web-process memory.

A throw-away PostgreSQL database gets one carrier with ``BENCH_LIVEMAP_FLEET``
(10,000) en-route missions, a partner client and a dispatcher with a verified
one-time-code session. daphne serves the console as in production with the
Redis channel layer (the server of ``REDIS_URL``, default
redis://127.0.0.1:6379, in database ``BENCH_LIVEMAP_REDIS_DB``, 14, so that
no other benchmark's broadcasts reach these dashboards).

* A sender process streams the fleet at 1 Hz over ``ws/ingest/`` (the
  partner stream): every 100 ms a batch of a tenth of the fleet, each event
  timestamped with the wall clock at sending. It also times each batch's
  acknowledgement (stored and committed): most of the floor under the map.
  With ``MAX_IN_FLIGHT`` (3) batches unacknowledged it skips a tick instead
  of queueing without bound, so a server that cannot keep up shows as a lower
  load achieved (events stored per second), printed with every row.
* A receiver process holds ``BENCH_LIVEMAP_CLIENTS`` (20) ``ws/map/``
  dashboards on the dispatcher's session cookie and, for every vehicle of
  every ``positions`` frame, takes receipt time - event timestamp.

Every mission has a planned route of 26 points (a north-south line 550 km
long, spread over ten degrees of longitude) and every event lies on it, so
each position's ETA is worked out along its route, as in production.

Phase 1: 1,000 vehicles, target p99 <= 120 ms; phase 2: ``BENCH_LIVEMAP_FLEET``
(10,000) vehicles, target p99 <= 300 ms; 20 dashboards each. Phase 3: the
same fleet stored by ``ingest_events`` in two processes of their own, as the
partner API on its WSGI server or the MQTT bridge would at that scale, so the
web process only serves the maps (on a 2-core machine one daphne process
cannot also take 10,000 events a second over ws/ingest/). For each: the
events per second the sender achieved (1 Hz per vehicle wanted), frames per
second per dashboard, p50/p99 latency (after a warm-up), the bytes a frame
spends per vehicle, the web process's resident memory and CPU (per cent of
one core) and the machine's load average; the baselines are the ingest acknowledgement of the same run (batch
sent -> stored and committed, the floor under the map) and daphne's memory
right after start-up. Frames follow changes (``LIVEMAP_COALESCE_SECONDS``
after the first position they carry, ``LIVEMAP_FRAME_SECONDS`` apart at the
least); set either in the environment to measure another value.

Between the phases, the cost of routes (sent once per mission, never in
frames): one dashboard asks for the routes of 1,000 missions the process has
not read yet (from the database) and of the 1,000 it holds (from memory);
their size and answer time, next to the snapshot of the same 1,000 trucks.

Then, with Chromium (``/usr/bin/chromium``) present, the page itself: the
live map open in a headless browser while 1,000 trucks stream, and how long
each redraw takes: the trucks' layer on every frame, the routes' layer only
when what it shows changes. Baseline: the least frame spacing, within which a
redraw must fit.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python benchmarks/bench_livemap.py
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port, percentile

CLIENTS = int(os.environ.get("BENCH_LIVEMAP_CLIENTS", "20"))
ROUTE_POINTS = 26
BROWSER_SECONDS = 12.0
CHROMIUM = "/usr/bin/chromium"
SECONDS = float(os.environ.get("BENCH_LIVEMAP_SECONDS", "20"))
# (vehicles, seconds streamed, warm-up not counted, p99 target ms): the second phase's first seconds
# include the process reading 9,000 routes it has not seen (a running console holds them already).
FLEET = int(os.environ.get("BENCH_LIVEMAP_FLEET", "10000"))
# (vehicles, how they are ingested, seconds streamed, warm-up not counted, p99 target ms). "ws": over
# ws/ingest/ into the web process that serves the maps; "process": by ingest_events in processes of
# their own. The first 10,000 phase's warm-up includes the web process reading 9,000 routes it has not seen
# (a running console holds them already).
PHASES = [
    (1000, "ws", SECONDS, 3.0, 120.0),
    (FLEET, "ws", SECONDS, 6.0, 300.0),
    (FLEET, "process", SECONDS, 3.0, 300.0),
]
MAX_VEHICLES = max(p[0] for p in PHASES)
TICKS_PER_SECOND = 10
# Batches sent and not yet acknowledged, at most: beyond that the sender skips ticks (an open loop
# would only measure a queue growing for as long as the phase lasts).
MAX_IN_FLIGHT = 3
# Processes storing the fleet in the "process" phase.
INGEST_PROCESSES = 2
REDIS_DB = int(os.environ.get("BENCH_LIVEMAP_REDIS_DB", "14"))


def route_lon(mission_id: int) -> float:
    """The meridian of a mission's planned route: forty lines 0.25 degrees apart."""
    return -97.0 - (mission_id % 40) * 0.25


def route_points(mission_id: int) -> list[list[float]]:
    """A planned route of ROUTE_POINTS points, due south from 35 N to 30 N (about 555 km)."""
    return [[round(35.0 - i * 5.0 / (ROUTE_POINTS - 1), 4), route_lon(mission_id)] for i in range(ROUTE_POINTS)]


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sender(port: int, token: str, fleet: list[tuple[int, str]], seconds: float, out: Any) -> None:
    """Stream ``fleet`` at 1 Hz for ``seconds`` over ws/ingest/; report (sent, accepted, errors, ack latencies ms)."""
    import websockets

    async def run() -> tuple[int, int, list[str], list[float]]:
        sent, accepted, errors = 0, 0, []
        # Batch sent -> its acknowledgement (stored and committed): most of the floor under the map's latency.
        sent_at: dict[int, float] = {}
        ack_ms: list[float] = []
        uri = f"ws://127.0.0.1:{port}/ws/ingest/"
        async with websockets.connect(uri, additional_headers={"Authorization": f"Bearer {token}"},
                                      max_size=None) as ws:  # fmt: skip
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                return 0, 0, [f"stream refused: {ready}"], []
            pending = asyncio.Event()

            async def acks() -> None:
                nonlocal accepted
                async for message in ws:
                    ack = json.loads(message)
                    if ack.get("ack") in sent_at:
                        ack_ms.append((time.time() - sent_at.pop(ack["ack"])) * 1000)
                    accepted += int(ack.get("accepted", 0))
                    if ack.get("rejected") or ack.get("error"):
                        errors.append(str(ack)[:300])
                    pending.set()

            reader = asyncio.create_task(acks())
            per_tick = max(1, len(fleet) // TICKS_PER_SECOND)
            start = time.time()
            tick = 0
            while time.time() - start < seconds:
                if len(sent_at) >= MAX_IN_FLIGHT:
                    # The server is behind: skip this tenth of the fleet for this second rather than queue
                    # batches without bound (the load achieved is what the server took, printed as ev/s).
                    tick += 1
                    await asyncio.sleep(max(0.0, start + tick / TICKS_PER_SECOND - time.time()))
                    continue
                share = fleet[(tick % TICKS_PER_SECOND) * per_tick : (tick % TICKS_PER_SECOND + 1) * per_tick]
                now = time.time()
                stamp = _stamp(now)
                # On the mission's route, a little further south each second.
                events = [
                    {"event_id": str(uuid.uuid4()), "mission_id": mid, "vehicle_id": vid, "ts": stamp,
                     "position": {"lat": 34.0 - (mid % 300) / 100 - tick / 4000, "lon": route_lon(mid),
                                  "speed_kph": 88.0, "heading_deg": 180.0}}
                    for mid, vid in share
                ]  # fmt: skip
                sent_at[tick] = now
                await ws.send(json.dumps({"seq": tick, "events": events}))
                sent += len(events)
                tick += 1
                await asyncio.sleep(max(0.0, start + tick / TICKS_PER_SECOND - time.time()))
            await asyncio.sleep(1.0)  # let the last acks arrive
            reader.cancel()
        return sent, accepted, errors, ack_ms

    out.put(asyncio.run(run()))


def ingest_sender(db_url: str, fleet: list[tuple[int, str]], seconds: float, out: Any) -> None:
    """The same batches, stored by ``ingest_events`` in this process instead of over ws/ingest/ to the web process.

    As the partner API on its WSGI server or the MQTT bridge store them at fleet scale: the web process
    serving the maps only receives the broadcasts (through Redis). The acknowledgement is the call's
    duration (stored and committed); a tick is skipped when the previous batches ran past it.
    """
    from benchmarks._server import django_setup

    django_setup(db_url)
    from missions.models import Carrier
    from missions.telemetry.ingest import MissionCache, ingest_events

    carrier = Carrier.objects.get(slug="bench")
    cache = MissionCache()
    sent, accepted, errors, ack_ms = 0, 0, [], []
    per_tick = max(1, len(fleet) // TICKS_PER_SECOND)
    start = time.time()
    tick = 0
    while time.time() - start < seconds:
        share = fleet[(tick % TICKS_PER_SECOND) * per_tick : (tick % TICKS_PER_SECOND + 1) * per_tick]
        now = time.time()
        stamp = _stamp(now)
        events = [
            {"event_id": str(uuid.uuid4()), "mission_id": mid, "vehicle_id": vid, "ts": stamp,
             "position": {"lat": 34.0 - (mid % 300) / 100 - tick / 4000, "lon": route_lon(mid),
                          "speed_kph": 88.0, "heading_deg": 180.0}}
            for mid, vid in share
        ]  # fmt: skip
        result = ingest_events(carrier=carrier, events=events, source="bench", cache=cache)
        ack_ms.append((time.time() - now) * 1000)
        sent += len(events)
        accepted += result.accepted
        if result.rejected:
            errors.append(str(result.as_dict())[:300])
        # The next tick due; those already past are skipped (the load achieved shows it).
        tick = max(tick + 1, math.ceil((time.time() - start) * TICKS_PER_SECOND))
        time.sleep(max(0.0, start + tick / TICKS_PER_SECOND - time.time()))
    time.sleep(1.0)  # the last broadcasts leave this process's broadcaster thread
    out.put((sent, accepted, errors, ack_ms))


def receiver(port: int, cookie: str, seconds: float, warmup: float, out: Any) -> None:
    """Hold CLIENTS dashboards for ``seconds``; report the latencies seen after ``warmup``.

    Every dashboard is sent the same encoded frame, so each distinct frame is decoded once (by its
    hash) and each socket's receipt time applied to it: at 10,000 trucks twenty decodings of every
    frame would take more CPU than the server it measures. The events of one sent batch share one
    timestamp, so a frame's latencies are kept as (latency ms, vehicles) pairs.
    """
    import orjson
    import websockets

    async def run() -> tuple[list[tuple[float, int]], int, list[str], float]:
        latencies: list[tuple[float, int]] = []
        frames = 0
        frame_bytes, frame_vehicles = 0, 0
        errors: list[str] = []
        started = time.time()
        headers = {"Cookie": f"sessionid={cookie}", "Origin": f"http://127.0.0.1:{port}"}
        # A frame is only stamped on arrival here and read by ``tally`` afterwards, so reading one
        # dashboard's copy does not delay the receipt time of the same frame on the next socket.
        arrived: list[tuple[float, bytes]] = []
        wake = asyncio.Event()
        # hash of a frame -> its vehicles grouped by event time ((epoch seconds, count), ...), None if no positions
        decoded: dict[int, list[tuple[float, int]] | None] = {}

        def groups(message: bytes) -> list[tuple[float, int]] | None:
            nonlocal frame_bytes, frame_vehicles
            frame = orjson.loads(message)
            if frame.get("type") != "positions":
                return None
            counts: dict[str, int] = {}
            for v in frame["vehicles"]:
                counts[v["last_seen_at"]] = counts.get(v["last_seen_at"], 0) + 1
            frame_bytes += len(message)
            frame_vehicles += len(frame["vehicles"])
            return [(datetime.fromisoformat(stamp).timestamp(), n) for stamp, n in counts.items()]

        def tally() -> None:
            nonlocal frames
            batch = arrived[:]
            arrived.clear()
            for now, message in batch:
                key = hash(message)
                if key not in decoded:
                    decoded[key] = groups(message)
                stamped = decoded[key]
                if stamped is None:
                    continue
                frames += 1
                if now - started < warmup:
                    continue
                latencies.extend(((now - at) * 1000, n) for at, n in stamped)

        async def tally_loop() -> None:
            while True:
                await wake.wait()
                wake.clear()
                await asyncio.sleep(0.01)  # the same frame on the other sockets is stamped first
                tally()

        async def dashboard() -> None:
            try:
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/map/", additional_headers=headers,
                                              max_size=None) as ws:  # fmt: skip
                    first = json.loads(await ws.recv())
                    if first.get("type") != "snapshot":
                        errors.append(f"no snapshot: {str(first)[:200]}")
                        return
                    while True:
                        message = await ws.recv(decode=False)
                        arrived.append((time.time(), message))
                        wake.set()
            except websockets.ConnectionClosed as exc:
                errors.append(f"closed: {exc}")

        tallying = asyncio.create_task(tally_loop())
        tasks = [asyncio.create_task(dashboard()) for _ in range(CLIENTS)]
        await asyncio.sleep(seconds)
        for task in [*tasks, tallying]:
            task.cancel()
        await asyncio.gather(*tasks, tallying, return_exceptions=True)
        tally()
        return latencies, frames, errors, frame_bytes / max(1, frame_vehicles)

    out.put(asyncio.run(run()))


def weighted_percentile(pairs: list[tuple[float, int]], pct: float) -> float:
    """Nearest-rank percentile of values given as (value, how many times)."""
    ordered = sorted(pairs)
    total = sum(n for _, n in ordered)
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= rank:
            return value
    return ordered[-1][0]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    """The machine's 1-minute load average (other work beside the benchmark shows here)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def routes_cost(port: int, cookie: str, held: list[int], unread: list[int]) -> dict[str, float]:
    """One dashboard: its snapshot, then the routes of ``unread`` (from the database) and ``held`` (in memory)."""
    import websockets

    async def run() -> dict[str, float]:
        headers = {"Cookie": f"sessionid={cookie}", "Origin": f"http://127.0.0.1:{port}"}
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/map/", additional_headers=headers,
                                      max_size=None) as ws:  # fmt: skip
            while True:
                message = await ws.recv()
                if json.loads(message).get("type") == "snapshot":
                    break
            out["snapshot_ms"], out["snapshot_bytes"] = (time.perf_counter() - t0) * 1000, len(message)
            out["snapshot_vehicles"] = len(json.loads(message)["vehicles"])
            for name, ids in (("unread", unread), ("held", held)):
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "routes", "mission_ids": ids}))
                # The answer may come in parts (no message over consumers.MESSAGE_BYTES): until all are in.
                size, count = 0, 0
                while count < len(ids):
                    message = await ws.recv()
                    answer = json.loads(message)
                    if answer.get("type") == "routes":
                        size, count = size + len(message), count + len(answer["routes"])
                out[f"{name}_ms"] = (time.perf_counter() - t0) * 1000
                out[f"{name}_bytes"] = size
                out[f"{name}_routes"] = count
        return out

    return asyncio.run(run())


def browser_draws(port: int, cookie: str, seconds: float) -> dict[str, list[float]]:
    """The live map page in headless Chromium for ``seconds``: how long each Plotly.react of each layer took (ms)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": f"http://127.0.0.1:{port}"}])
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/map/")
            # Time every redraw from here on, by layer: #livemap (trucks) and #livemap-routes.
            page.evaluate(
                """() => {
                  window.__draws = {};
                  const react = Plotly.react;
                  Plotly.react = function (gd) {
                    const t0 = performance.now();
                    const done = react.apply(this, arguments);
                    Promise.resolve(done).then(() => {
                      (window.__draws[gd.id] = window.__draws[gd.id] || []).push(performance.now() - t0);
                    });
                    return done;
                  };
                }"""
            )
            page.wait_for_timeout(seconds * 1000)
            draws: dict[str, list[float]] = page.evaluate("window.__draws")
            draws["_trucks"] = [float(page.evaluate("document.getElementById('livemap').dataset.trucksShown"))]
            return draws
        finally:
            browser.close()


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_livemap: skipped, needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        return 0
    # A Redis database of its own: another benchmark ingesting on the same Redis at the same time
    # broadcasts to the same "fleet" group, and its trucks would reach these dashboards.
    redis_url = (
        urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")._replace(path=f"/{REDIS_DB}").geturl()
    )
    os.environ["REDIS_URL"] = redis_url  # the bench process writes the session where the server reads it
    from benchmarks._server import (
        BASE_DIR,
        django_setup,
        fleet_create,
        rss_mib,
        served,
        server_env,
        throwaway_database,
    )

    django_setup(url)
    import httpx
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from missions.events import Actor
    from missions.models import Carrier, Mission
    from missions.partner.services import partner_client_create
    from tms_console.roles import DISPATCHER, roles_sync

    with throwaway_database("livemap") as db_url:
        carrier = Carrier.objects.create(name="Bench Autonomous", slug="bench", kind="autonomous",
                                         max_autonomy_level=4, operating_regions=[])  # fmt: skip
        missions = fleet_create(carrier, MAX_VEHICLES)
        for mission in missions:
            mission.planned_route = route_points(mission.pk)
            mission.planned_route_km = 555.0
            mission.planned_route_basis = "bench route"
        Mission.objects.bulk_update(
            missions, ["planned_route", "planned_route_km", "planned_route_basis"], batch_size=1000
        )
        fleet = [(m.pk, f"TRK-{n:06d}") for n, m in enumerate(missions)]
        issued = partner_client_create(carrier_id=carrier.pk, name="bench", scopes=["telemetry:write"],
                                       actor=Actor.system("bench"))  # fmt: skip
        roles_sync()
        user = User.objects.create_user(username="bench-dispatcher", password="bench-pass-" + uuid.uuid4().hex)
        user.groups.add(Group.objects.get(name=DISPATCHER))
        device = TOTPDevice.objects.create(user=user, name="default", confirmed=True)
        # As tests/conftest.py verified_client: a logged-in session whose one-time code was verified.
        client = Client()
        client.force_login(user)
        session = client.session
        session["otp_device_id"] = device.persistent_id
        session.save()
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        connection.close()

        port = free_port()
        static_root = tempfile.mkdtemp(prefix="bench-livemap-static-")
        env = server_env(db_url, REDIS_URL=redis_url, CELERY_TASK_ALWAYS_EAGER="1", STATIC_ROOT=static_root)
        # The page's scripts (plotly, livemap.js) as the production server serves them, for the browser phase.
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=BASE_DIR,
                       env=env, check=True)  # fmt: skip
        frame_s = float(env.get("LIVEMAP_FRAME_SECONDS", settings.LIVEMAP_FRAME_SECONDS))
        coalesce_s = float(env.get("LIVEMAP_COALESCE_SECONDS", settings.LIVEMAP_COALESCE_SECONDS))
        ctx = multiprocessing.get_context("spawn")
        with served("daphne", port, env) as proc:
            idle_rss = rss_mib(proc.pid)
            token = httpx.post(
                f"http://127.0.0.1:{port}/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "telemetry:write"},
                auth=(issued.client_id, issued.client_secret),
            ).json()["access_token"]
            print(f"live map: {CLIENTS} dashboards on ws/map/, fleet streamed over ws/ingest/ at 1 Hz, "
                  f"Redis channel layer ({redis_url}); a frame {coalesce_s * 1000:.0f} ms after the first position"
                  f" it carries, at least {frame_s * 1000:.0f} ms after the one before")  # fmt: skip
            print(f"daphne RSS after start-up (baseline): {idle_rss:.0f} MiB")
            header = (
                f"{'vehicles':>8} {'ingest':>7} {'ev/s':>8} {'frames/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
                f" {'RSS MiB':>8} {'ack p50':>8} {'ack p99':>8} {'B/truck':>8} {'web %':>6} {'load':>6}"
            )
            print(header)
            for phase, (vehicles, via, seconds, warmup, target_ms) in enumerate(PHASES):
                if phase == 1:
                    _routes_and_browser(port, token, cookie, fleet, ctx)
                    print(header)
                out = ctx.Queue()
                recv = ctx.Process(target=receiver, args=(port, cookie, seconds + 1.5, warmup, out))
                recv.start()
                time.sleep(1.0)  # dashboards connected and holding their snapshot
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                share = fleet[:vehicles]
                if via == "ws":
                    sends = [ctx.Process(target=sender, args=(port, token, share, seconds, out))]
                else:  # one process per core, each storing half the fleet
                    sends = [ctx.Process(target=ingest_sender, args=(db_url, share[i::INGEST_PROCESSES], seconds, out))
                             for i in range(INGEST_PROCESSES)]  # fmt: skip
                for send in sends:
                    send.start()
                results = [out.get(timeout=seconds + 60) for _ in range(1 + len(sends))]
                rss = rss_mib(proc.pid)
                load = load_average()
                # Of one core: 100 % is all one Python process can do.
                web_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
                recv.join(10)
                for send in sends:
                    send.join(10)
                recv_part = next(r for r in results if isinstance(r[0], list))
                sent_parts = [r for r in results if isinstance(r[0], int)]
                accepted = sum(r[1] for r in sent_parts)
                send_errors = [e for r in sent_parts for e in r[2]]
                ack_ms = [a for r in sent_parts for a in r[3]]
                latencies, frames, recv_errors, bytes_per_vehicle = recv_part
                if send_errors or recv_errors:
                    print(f"  errors: {(send_errors + recv_errors)[:3]}")
                if not latencies:
                    raise SystemExit("no position frame reached a dashboard")
                p50, p99 = weighted_percentile(latencies, 50), weighted_percentile(latencies, 99)
                ack50, ack99 = (percentile(ack_ms, 50), percentile(ack_ms, 99)) if ack_ms else (math.nan, math.nan)
                # The load the sender achieved: events stored per second streamed (target: one per vehicle).
                rate = accepted / seconds
                met = p99 <= target_ms
                print(f"{vehicles:8,} {via:>7} {rate:8,.0f} {frames / CLIENTS / seconds:8.1f} {p50:8.1f} {p99:8.1f}"
                      f" {max(v for v, _ in latencies):8.1f} {rss:8.0f} {ack50:8.1f} {ack99:8.1f}"
                      f" {bytes_per_vehicle:8.0f} {web_cpu:6.0f} {load:6.2f}   p99 <= {target_ms:.0f} ms: "
                      f"{'yes' if met else 'NO'}")  # fmt: skip
                if rate < 0.95 * vehicles:
                    print(f"  the sender achieved {rate:,.0f} events/s of the {vehicles:,} a second wanted")
                # The 1,000 phase is the one DESIGN.md states; at fleet scale, where ingest ran.
                label = "" if vehicles == 1000 else {"ws": ", ingest in daphne", "process": ", ingest apart"}[via]
                figure(name=f"live map p99, {vehicles:,} vehicles, {CLIENTS} dashboards{label}", measured=p99,
                       unit="ms", baseline=ack99, baseline_name="ms ingest ack p99",
                       target=f"p99 <= {target_ms:.0f} ms", met=met)  # fmt: skip
                figure(name=f"live map p50, {vehicles:,} vehicles{label}", measured=p50, unit="ms",
                       baseline=ack50, baseline_name="ms ingest ack p50")  # fmt: skip
                figure(name=f"live map load achieved, {vehicles:,} vehicles{label}", measured=rate, unit="ev/s",
                       baseline=float(vehicles), baseline_name="ev/s wanted (1 Hz)", target=">= 95 % of 1 Hz",
                       met=rate >= 0.95 * vehicles)  # fmt: skip
                figure(name=f"web process RSS, {vehicles:,} vehicles{label}", measured=rss, unit="MiB",
                       baseline=idle_rss, baseline_name="MiB idle", target="(report)")  # fmt: skip
                figure(name=f"live map frame bytes per vehicle, {vehicles:,} vehicles{label}",
                       measured=bytes_per_vehicle, unit="B", target="(report)")  # fmt: skip
        print(f"targets: p99 <= 120 ms at 1,000 vehicles and <= 300 ms at 10,000, {CLIENTS} dashboards")
        shutil.rmtree(static_root, ignore_errors=True)
    return 0


def _routes_and_browser(port: int, token: str, cookie: str, fleet: list[tuple[int, str]], ctx: Any) -> None:
    """What routes cost (once per mission), and the page's redraws with 1,000 trucks and their routes."""
    held, unread = [mid for mid, _ in fleet[:1000]], [mid for mid, _ in fleet[1000:2000]]
    cost = routes_cost(port, cookie, held, unread)
    snap_kib = cost["snapshot_bytes"] / 1024
    print(f"routes of 1,000 missions, once per page: {cost['unread_bytes'] / 1024:,.0f} KiB "
          f"({cost['unread_bytes'] / max(1, cost['unread_routes']):,.0f} B a route of {ROUTE_POINTS} points); "
          f"answered in {cost['unread_ms']:.0f} ms read from the database, {cost['held_ms']:.0f} ms held in memory; "
          f"the snapshot of {cost['snapshot_vehicles']:,.0f} trucks: {snap_kib:,.0f} KiB in "
          f"{cost['snapshot_ms']:.0f} ms")  # fmt: skip
    figure(name="live map routes of 1,000 missions (once per page)", measured=cost["unread_bytes"] / 1024,
           unit="KiB", baseline=snap_kib, baseline_name="KiB snapshot of the same trucks",
           target="(report)")  # fmt: skip
    figure(name="live map routes answer, 1,000 read from the database", measured=cost["unread_ms"], unit="ms",
           baseline=cost["snapshot_ms"], baseline_name="ms for the snapshot", target="(report)")  # fmt: skip
    figure(name="live map routes answer, 1,000 held in memory", measured=cost["held_ms"], unit="ms",
           target="(report)")  # fmt: skip
    if not os.access(CHROMIUM, os.X_OK):
        print(f"browser redraws: skipped, no {CHROMIUM}")
        return
    out = ctx.Queue()
    send = ctx.Process(target=sender, args=(port, token, fleet[:1000], BROWSER_SECONDS + 3, out))
    send.start()
    draws = browser_draws(port, cookie, BROWSER_SECONDS)
    out.get(timeout=BROWSER_SECONDS + 60)
    send.join(10)
    from django.conf import settings

    frame_ms = float(os.environ.get("LIVEMAP_FRAME_SECONDS", settings.LIVEMAP_FRAME_SECONDS)) * 1000
    trucks, routes = draws.get("livemap", []), draws.get("livemap-routes", [])
    shown = int(draws.get("_trucks", [0])[0])
    if not trucks:
        print("browser redraws: the page drew nothing")
        return
    routes_p50, routes_max = (percentile(routes, 50), max(routes)) if routes else (math.nan, math.nan)
    print(f"browser, {shown:,} trucks with their routes, {BROWSER_SECONDS:.0f} s: trucks' layer redrawn "
          f"{len(trucks)} times, p50 {percentile(trucks, 50):.0f} ms, p99 {percentile(trucks, 99):.0f} ms; "
          f"routes' layer redrawn {len(routes)} times, p50 {routes_p50:.0f} ms, max {routes_max:.0f} ms")  # fmt: skip
    figure(name="live map page redraw p99, trucks' layer, 1,000 trucks", measured=percentile(trucks, 99), unit="ms",
           baseline=frame_ms, baseline_name="ms least frame spacing", target="(report)")  # fmt: skip
    if routes:
        figure(name="live map page redraw p50, routes' layer (on change only), 1,000 routes",
               measured=percentile(routes, 50), unit="ms", baseline=frame_ms, baseline_name="ms least frame spacing",
               target="(report)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
