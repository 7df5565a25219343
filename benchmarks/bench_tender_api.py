#!/usr/bin/env python
"""Tender API latency (p50 / p99) next to a trivial endpoint, measured in the same run.

A throw-away PostgreSQL database gets a carrier, a partner client and 500
sent tenders. The console is started as in production (daphne, DEBUG off,
psycopg pool) and a client with a valid bearer token reads
``GET /api/v1/tenders?status=sent`` (a page of 25 with their shipments) and
``GET /api/v1/tenders/<id>`` from ``BENCH_CONCURRENCY`` threads. The same
threads then read ``/healthz`` (one ``SELECT 1``): the baseline for what the
server, the network stack and the client cost without our code.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_tender_api.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from benchmarks._report import figure  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
TENDERS = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def measure(client_factory: object, paths: list[str], headers: dict[str, str]) -> list[float]:
    import httpx

    def worker(share: list[str]) -> list[float]:
        out: list[float] = []
        with httpx.Client(base_url=BASE_URL, headers=headers, timeout=10.0) as client:
            for path in share:
                start = time.perf_counter()
                response = client.get(path)
                out.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{path} answered {response.status_code}: {response.text[:200]}")
        return out

    shares = [paths[i::CONCURRENCY] for i in range(CONCURRENCY)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return [ms for part in pool.map(worker, shares) for ms in part]


BASE_URL = ""


def main() -> int:
    global BASE_URL
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_tender_api: skipped, needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        return 0
    os.environ["DATABASE_URL"] = url
    # The production settings (not the test ones) so the client secret is hashed as the server expects.
    os.environ["DJANGO_SETTINGS_MODULE"] = "tms_console.settings"
    os.environ.setdefault("TMS_TESTING", "1")
    os.environ["DB_POOL"] = "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    import httpx
    from django.db import connection
    from django.utils import timezone

    from missions import services
    from missions.events import Actor
    from missions.models import Carrier, Shipment
    from missions.partner.services import partner_client_create

    old_name = connection.settings_dict["NAME"]
    test_name = f"{old_name}_bench_tender"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = test_name
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = None
    try:
        actor = Actor.system("bench")
        carrier = Carrier.objects.create(
            name="Bench Autonomous", slug="bench", kind="autonomous", max_autonomy_level=4, operating_regions=[]
        )
        issued = partner_client_create(carrier_id=carrier.pk, name="bench", scopes=["tender:read"], actor=actor)
        now = timezone.now()
        tender_ids = []
        for i in range(TENDERS):
            shipment = Shipment.objects.create(
                reference=f"BENCH-{i:05d}",
                origin_address="Dallas, TX",
                origin_region="TX",
                origin_lat=32.78,
                origin_lon=-96.8,
                destination_address="Houston, TX",
                destination_region="TX",
                destination_lat=29.76,
                destination_lon=-95.37,
                pickup_window_start=now,
                pickup_window_end=now + timezone.timedelta(hours=2),
                delivery_window_start=now + timezone.timedelta(hours=4),
                delivery_window_end=now + timezone.timedelta(hours=8),
                weight_kg=15000,
            )
            tender = services.tender_create(
                actor=actor,
                shipment_id=shipment.pk,
                carrier_id=carrier.pk,
                offered_price_usd=Decimal("1300"),
                expiry_seconds=86400,
            )
            services.tender_mark_sent(tender_id=tender.pk, actor=actor)
            tender_ids.append(tender.pk)
        connection.close()

        port = free_port()
        BASE_URL = f"http://127.0.0.1:{port}"
        db_url = url.rsplit("/", 1)[0] + f"/{test_name}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tms_console.settings",
            "DATABASE_URL": db_url,
            "DEBUG": "0",
            "TMS_TESTING": "0",
            "DB_POOL": "1",
            "SECRET_KEY": "bench-only-" + "x" * 50,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "API_RATE_LIMIT": "1000000/min",
            "LOG_LEVEL": "WARNING",
        }
        server_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process, below)
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tms_console.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: nobody reads the pipe during the run, and a full one blocks the server.
            stderr=server_log,
        )
        for _ in range(100):
            try:
                if httpx.get(f"{BASE_URL}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("daphne did not start")
        token = httpx.post(
            f"{BASE_URL}/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "tender:read"},
            auth=(issued.client_id, issued.client_secret),
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        list_paths = ["/api/v1/tenders?status=sent"] * REQUESTS
        detail_paths = [f"/api/v1/tenders/{tender_ids[i % TENDERS]}" for i in range(REQUESTS)]
        trivial_paths = ["/healthz"] * REQUESTS
        measure(None, list_paths[:200], auth)  # warm-up: pool, caches, code paths
        measure(None, trivial_paths[:200], {})
        results = {
            "GET /api/v1/tenders (page of 25)": measure(None, list_paths, auth),
            "GET /api/v1/tenders/<id>": measure(None, detail_paths, auth),
            "GET /healthz (baseline)": measure(None, trivial_paths, {}),
        }
        base = results["GET /healthz (baseline)"]
        print(f"tender API latency, {REQUESTS} requests each, {CONCURRENCY} client threads, daphne + PostgreSQL")
        print(f"{'endpoint':38} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'p99 / baseline p99':>20}")
        for name, values in results.items():
            print(
                f"{name:38} {percentile(values, 50):8.2f} {percentile(values, 99):8.2f} "
                f"{statistics.fmean(values):8.2f} {percentile(values, 99) / percentile(base, 99):20.2f}"
            )
        print("target (DESIGN.md §6): tender API p99 <= 50 ms")
        base_p50, base_p99 = percentile(base, 50), percentile(base, 99)
        for name, values in results.items():
            if name.startswith("GET /healthz"):
                continue
            p50, p99 = percentile(values, 50), percentile(values, 99)
            figure(name=f"{name} p50", measured=p50, unit="ms", baseline=base_p50, baseline_name="ms /healthz p50")
            figure(name=f"{name} p99", measured=p99, unit="ms", baseline=base_p99, baseline_name="ms /healthz p99",
                   target="p99 <= 50 ms", met=p99 <= 50)  # fmt: skip
        return 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    raise SystemExit(main())
