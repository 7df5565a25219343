#!/usr/bin/env python
"""The rate limiter on Redis: its accuracy under a concurrent burst, and what it costs a request.

A throw-away PostgreSQL database gets a carrier and partner clients; the
console is served as in production (DEBUG off, psycopg pool, Redis from
``REDIS_URL``), by gunicorn (two gthread workers, ``tms_console.wsgi``) and by
daphne (``make run``).

* Accuracy: with ``API_RATE_LIMIT`` at ``BENCH_LIMITER_LIMIT`` requests per
  7 hours, one client fires twice the limit at once (one keep-alive
  connection per thread, released together by a barrier) at
  ``GET /api/v1/capabilities``, ``BENCH_LIMITER_ROUNDS`` times, each round with
  a fresh client. The figure is the worst round's admitted / limit (target:
  1.00 to 1.02); the baseline is the limit itself. Every other answer must
  be 429.
* Cost: two servers of the same kind (one worker each) run side by side,
  one with the limiter (a limit never reached) and one without
  (``API_RATE_LIMIT`` empty); one client sends ``BENCH_LIMITER_REQUESTS``
  requests to each, alternating, so both see the same moment of a shared
  machine; a second pass swaps the servers' roles. The figure is p50 with
  the limiter minus p50 without (target: <= 0.3 ms); the baseline is the p50
  without. The script also prints the median of the paired differences and
  one limiter decision measured in process, asking Redis every time and with
  the leases the partner policies use (``tms_console.ratelimit``).

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python benchmarks/bench_limiter.py
"""

from __future__ import annotations

import http.client
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port, percentile
from benchmarks._server import django_setup, served, server_env, throwaway_database

LIMIT = int(os.environ.get("BENCH_LIMITER_LIMIT", "200"))
ROUNDS = int(os.environ.get("BENCH_LIMITER_ROUNDS", "3"))
REQUESTS = int(os.environ.get("BENCH_LIMITER_REQUESTS", "800"))
WINDOW = "7h"  # a window no other configuration uses: its counters are this script's alone
PATH = "/api/v1/capabilities"


def _clear_counters(redis_url: str) -> None:
    """Forget this script's counters from an earlier run (they live for two windows)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("tms:rl:partner:25200:*", count=1000):
        client.delete(key)
    client.close()


def _token(port: int, client_id: str, secret: str) -> str:
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{port}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "tender:read"},
        auth=(client_id, secret),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _burst(port: int, token: str, count: int) -> dict[int, int]:
    """``count`` concurrent requests of one client; {status: answers}."""
    barrier = threading.Barrier(count)

    def one(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            barrier.wait(timeout=120)
            connection.request("GET", PATH, headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(one, range(count)))
    return {status: statuses.count(status) for status in sorted(set(statuses))}


def _alternating(ports: tuple[int, int], tokens: tuple[str, str], count: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``count`` requests to each server, one after the other, alternating."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in ports]
    samples: tuple[list[float], list[float]] = ([], [])
    try:
        for n in range(count + 100):
            for side in (0, 1) if n % 2 == 0 else (1, 0):
                started = time.perf_counter()
                connections[side].request("GET", PATH, headers={"Authorization": f"Bearer {tokens[side]}"})
                response = connections[side].getresponse()
                response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status != 200:
                    raise SystemExit(f"bench_limiter: {PATH} answered {response.status} during the cost run")
                if n >= 100:  # the first hundred warm both servers up
                    samples[side].append(elapsed)
    finally:
        for connection in connections:
            connection.close()
    return samples


def _cost(kind: str, db_url: str, redis_url: str, clients: list[Any]) -> tuple[list[float], list[float], list[float]]:
    """Latencies with and without the limiter, and their paired differences, over two passes.

    The second pass swaps which server runs the limiter, so what differs
    between two server processes (where the scheduler put them, which one
    warmed up first) falls on both sides equally.
    """
    on: list[float] = []
    off: list[float] = []
    paired: list[float] = []
    limited = server_env(db_url, REDIS_URL=redis_url, API_RATE_LIMIT=f"1000000000/{WINDOW}")
    unlimited = server_env(db_url, REDIS_URL=redis_url, API_RATE_LIMIT="")
    for swapped in (False, True):
        ports = (free_port(), free_port())
        envs = (unlimited, limited) if swapped else (limited, unlimited)
        with served(kind, ports[0], envs[0], workers=1), served(kind, ports[1], envs[1], workers=1):
            tokens = (
                _token(ports[0], clients[0].client_id, clients[0].client_secret),
                _token(ports[1], clients[1].client_id, clients[1].client_secret),
            )
            first, second = _alternating(ports, tokens, REQUESTS)
        with_limiter, without = (second, first) if swapped else (first, second)
        on += with_limiter
        off += without
        paired += [a - b for a, b in zip(with_limiter, without, strict=True)]
    return on, off, paired


def _decision_p50(redis_url: str, *, leased: bool) -> float:
    """One limiter decision on Redis from this process, in ms (p50 of 2,000); leased as the partner policy is."""
    from django.test import override_settings

    from tms_console.ratelimit import Policy, Rate, limiter

    with override_settings(RATELIMIT_REDIS_URL=redis_url):
        store = limiter()
        policy = Policy("partner", Rate(10**9, 25200), leased=leased)
        samples = []
        for n in range(2100):
            started = time.perf_counter()
            store.hit(policy, f"bench-decision-{leased}")
            if n >= 100:
                samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 50)


def _ping_p50(redis_url: str, work_seconds: float) -> float:
    """A Redis round trip (ms, p50 of 500) after ``work_seconds`` of busy work, as a request has between two."""
    import redis

    client = redis.Redis.from_url(redis_url)
    samples = []
    for _ in range(550):
        until = time.perf_counter() + work_seconds
        while time.perf_counter() < until:
            pass
        started = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - started) * 1000)
    client.close()
    return percentile(samples[50:], 50)


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not url.startswith(("postgres://", "postgresql://")) or not redis_url:
        print("bench_limiter: skipped, needs PostgreSQL and Redis (set DATABASE_URL and REDIS_URL)")
        return 0
    django_setup(url)
    from django.db import connection

    from missions.events import Actor
    from missions.models import Carrier
    from missions.partner.services import partner_client_create

    with throwaway_database("limiter") as db_url:
        actor = Actor.system("bench")
        carrier = Carrier.objects.create(
            name="Bench Limits", slug="bench-limits", kind="autonomous", max_autonomy_level=4, operating_regions=[]
        )
        clients = [
            partner_client_create(carrier_id=carrier.pk, name=f"bench {n}", scopes=["tender:read"], actor=actor)
            for n in range(2 * ROUNDS + 2)
        ]
        connection.close()
        _clear_counters(redis_url)

        print(f"limiter accuracy: {ROUNDS} bursts of {2 * LIMIT} concurrent requests against {LIMIT}/{WINDOW}, Redis")
        worst: dict[str, float] = {}
        for k, kind in enumerate(("gunicorn", "daphne")):
            port = free_port()
            env = server_env(db_url, REDIS_URL=redis_url, API_RATE_LIMIT=f"{LIMIT}/{WINDOW}")
            with served(kind, port, env):
                ratios = []
                for r in range(ROUNDS):
                    issued = clients[k * ROUNDS + r]
                    answers = _burst(port, _token(port, issued.client_id, issued.client_secret), 2 * LIMIT)
                    admitted = answers.get(200, 0)
                    if set(answers) - {200, 429}:
                        print(f"  {kind} round {r + 1}: unexpected answers {answers}")
                        return 1
                    ratios.append(admitted / LIMIT)
                    print(f"  {kind} round {r + 1}: {admitted} admitted, {answers.get(429, 0)} refused (429)")
            worst[kind] = max(ratios, key=lambda ratio: abs(ratio - 1.0))
            figure(
                name=f"limiter accuracy, {2 * LIMIT}-request burst ({kind})",
                measured=worst[kind] * LIMIT,
                unit="admitted",
                baseline=float(LIMIT),
                baseline_name="limit",
                target="admitted/limit 1.00-1.02",
                met=1.0 <= worst[kind] <= 1.02,
            )

        print(
            f"limiter cost: {REQUESTS} pairs of sequential GET {PATH}, limiter on / off, alternating, "
            "two passes with the servers' roles swapped, one worker each, Redis"
        )
        for kind in ("gunicorn", "daphne"):
            on, off, paired = _cost(kind, db_url, redis_url, clients[-2:])
            p50_on, p50_off = percentile(on, 50), percentile(off, 50)
            cost = p50_on - p50_off
            print(
                f"  {kind}: p50 {p50_on:.3f} ms with the limiter, {p50_off:.3f} ms without: {cost:+.3f} ms "
                f"(median of paired differences {percentile(paired, 50):+.3f} ms); "
                f"p99 {percentile(on, 99):.2f} / {percentile(off, 99):.2f} ms"
            )
            figure(
                name=f"limiter cost per request, p50 on - off ({kind})",
                measured=cost,
                unit="ms",
                baseline=p50_off,
                baseline_name="ms p50 without limiter",
                target="<= 0.3 ms",
                met=cost <= 0.3,
            )
        decision, leased = _decision_p50(redis_url, leased=False), _decision_p50(redis_url, leased=True)
        ping_busy, ping_idle = _ping_p50(redis_url, 0.005), _ping_p50(redis_url, 0)
        print(
            f"  one limiter decision in process, back to back, p50: {decision:.3f} ms asking Redis every time, "
            f"{leased:.3f} ms with leases (the partner, address and webhook policies); a Redis PING p50 "
            f"{ping_idle:.3f} ms back to back, {ping_busy:.3f} ms after 5 ms of other work (the floor on this "
            "machine for anything that asks Redis once per request)"
        )
        _clear_counters(redis_url)
    summary: dict[str, Any] = {k: round(v, 3) for k, v in worst.items()}
    print(f"worst admitted/limit per server: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
