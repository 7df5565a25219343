#!/usr/bin/env python
"""Single-event signed webhooks (Standard Webhooks), validated and persisted, in requests/s.

A throw-away PostgreSQL database gets a carrier with a webhook secret and
``BENCH_WEBHOOK_MISSIONS`` en-route missions. The console is served as in
production (DEBUG off, psycopg pool), first by daphne (what ``make run``
starts), then by gunicorn with two gthread workers of 32 threads
(``tms_console.wsgi``: the webhook fast path and its group commit, DESIGN.md
§2), when it is installed. Against each server, ``BENCH_WEBHOOK_PROCS`` load-generator
processes x ``BENCH_WEBHOOK_THREADS`` keep-alive connections post for
``BENCH_WEBHOOK_SECONDS``: one telemetry event per delivery, each with its own
``webhook-id`` and signature. Every answer must be 200 and not a duplicate,
and at the end every accepted event must be in the window table. The
baseline, measured in the same run against the same server, is ``GET
/healthz`` (one ``SELECT 1``). Targets: >= 800 requests/s (DESIGN.md §6); as
``make run`` serves webhooks (gunicorn on ``PARTNER_PORT``), >= 2,000
requests/s and >= 85 % of ``/healthz``. When Debian's ``wrk`` is installed it
drives the measured phases (every delivery signed ahead, each sent once);
``BENCH_WEBHOOK_LOADER=python`` uses the Python senders.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms .venv/bin/python benchmarks/bench_webhook.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._report import figure, free_port, percentile

SECONDS = float(os.environ.get("BENCH_WEBHOOK_SECONDS", "8"))
PROCS = int(os.environ.get("BENCH_WEBHOOK_PROCS", "2"))
THREADS = int(os.environ.get("BENCH_WEBHOOK_THREADS", "32"))  # 64 concurrent senders in all
MISSIONS = int(os.environ.get("BENCH_WEBHOOK_MISSIONS", "2000"))  # <= 1 Hz per truck at the target rate
TARGET = 800.0
PREPARED_PER_SECOND = 150  # signed deliveries prepared per connection and second of the phase
# wrk (Debian's package) drives the load from C when it is installed: the load generator shares the
# two cores with the server, and wrk takes far less of them than Python senders. BENCH_WEBHOOK_LOADER
# =python forces the Python senders.
LOADER = os.environ.get("BENCH_WEBHOOK_LOADER") or ("wrk" if shutil.which("wrk") else "python")
WRK_THREADS = 2
WRK_PREPARED_PER_SECOND = 6000  # signed deliveries prepared per second of a phase, more than any server here does
SHARE_TARGET = 0.85  # the webhook as make run serves it (gunicorn) against /healthz on the same server
RATE_TARGET = 2000.0


def _sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _delivery(key: bytes, m: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """One signed single-event telemetry delivery: (path, body, headers)."""
    now = datetime.now(UTC)
    event = {
        "event_id": str(uuid.uuid4()), "mission_id": m["id"], "vehicle_id": m["vehicle"],
        "ts": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "position": {"lat": 31.5, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0},
        "connectivity": {"uplink": "5g", "latency_ms": 40}, "autonomy_mode": "autonomous",
    }  # fmt: skip
    body = json.dumps({"type": "telemetry", "data": event}).encode()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": _sign(key, webhook_id, stamp, body),
    }
    return m["path"], body, headers


def _request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 request as bytes (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    """A keep-alive client that sends prepared bytes and reads one response.

    Much cheaper per request than ``http.client`` (which parses every response
    header with the email parser): the load generator shares the machine's two
    cores with the server, so what it spends is taken from the figure.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    self._fill()
                size_line, _, self.buffer = self.buffer.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(self.buffer) < size + 2:
                    self._fill()
                body, self.buffer = body + self.buffer[:size], self.buffer[size + 2 :]
                if size == 0:
                    return status, body
        marker = lower.find(b"content-length:")
        length = int(lower[marker + 15 :].split(b"\r\n", 1)[0]) if marker >= 0 else 0
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def close(self) -> None:
        self.sock.close()


def _load(
    args: tuple[int, str, float, str, list[dict[str, Any]], int],
) -> tuple[int, list[float], str, float, float]:
    """One load-generator process: THREADS keep-alive connections for ``seconds``; (ok count, latencies, error).

    Deliveries are signed before the clock starts (each with its own id, event
    and signature, well inside the 5-minute tolerance), so the load generator,
    which shares the machine's two cores with the server, spends its time
    sending rather than signing. The server still verifies every signature.
    """
    port, mode, seconds, secret, missions, seed = args
    key = base64.b64decode(secret.removeprefix("whsec_"))
    per_thread = int(seconds * PREPARED_PER_SECOND)
    prepared: list[list[tuple[str, bytes, dict[str, str]]]] = []
    for n in range(THREADS):
        if mode == "healthz":
            prepared.append([])
            continue
        prepared.append(
            [_delivery(key, missions[(seed * 7919 + n * 131 + i) % len(missions)]) for i in range(per_thread)]
        )
    started = time.time()
    stop_at = time.perf_counter() + seconds
    counts: list[int] = []
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        conn = _Connection(port)
        ok, mine, i = 0, [], 0
        mine_prepared = prepared[n]
        healthz = _request("GET", "/healthz", b"", {})
        try:
            while time.perf_counter() < stop_at:
                if mode == "healthz":
                    data = healthz
                elif i < len(mine_prepared):
                    data = _request("POST", *mine_prepared[i])
                else:  # ran past what was prepared: sign on the fly
                    data = _request("POST", *_delivery(key, missions[(seed * 7919 + n * 131 + i) % len(missions)]))
                i += 1
                t0 = time.perf_counter()
                status, body = conn.exchange(data)
                mine.append((time.perf_counter() - t0) * 1000)
                if status != 200 or (mode == "webhook" and b'"duplicate":false' not in body.replace(b" ", b"")):
                    with lock:
                        errors.append(f"{status} {body[:200]!r}")
                    return
                ok += 1
        except Exception as exc:  # reported, the run fails
            with lock:
                errors.append(repr(exc))
        finally:
            conn.close()
            with lock:
                counts.append(ok)
                latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), latencies, errors[0] if errors else "", started, time.time()


def drive(
    port: int, mode: str, seconds: float, secret: str, missions: list[dict[str, Any]]
) -> tuple[float, float, int]:
    """Requests/s, p99 ms and the number of 200 answers over ``seconds``, from PROCS processes."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCS) as pool:
        parts = pool.map(_load, [(port, mode, seconds, secret, missions, p) for p in range(PROCS)])
    errors = [p[2] for p in parts if p[2]]
    if errors:
        raise SystemExit(f"{mode}: {errors[0]}")
    done = sum(p[0] for p in parts)
    # From the first process's start to the last one's end: preparation is outside the measured phase.
    elapsed = max(p[4] for p in parts) - min(p[3] for p in parts)
    latencies = [ms for p in parts for ms in p[1]]
    return done / elapsed, percentile(latencies, 99) if latencies else float("nan"), done


WRK_SCRIPT = r"""
-- Each wrk thread sends its own file of signed deliveries, one per line:
-- path TAB webhook-id TAB timestamp TAB signature TAB body. Never twice: the run fails if one is resent.
local threads, next_id = {}, 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  prepared, n, bad, dup, first_bad = {}, 0, 0, 0, ""
  for line in io.lines(args[1] .. "." .. tid) do
    local path, id, stamp, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    prepared[#prepared + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json", ["webhook-id"] = id,
      ["webhook-timestamp"] = stamp, ["webhook-signature"] = sig }, body)
  end
end
function request()
  n = n + 1
  if n > #prepared then n = 1 end
  return prepared[n]
end
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body, 1, 200) end
  elseif not string.find(body, '"duplicate":%s*false') then
    dup = dup + 1
  end
end
function done(summary, latency, requests)
  local b, d, s, f = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad"); d = d + t:get("dup"); s = s + t:get("n")
    if f == "" then f = t:get("first_bad") end
  end
  io.write(string.format('WRK {"requests": %d, "seconds": %f, "p99_ms": %f, "bad": %d, "dup": %d, "sent": %d, ' ..
    '"socket_errors": %d, "first_bad": "%s"}\n', summary.requests, summary.duration / 1e6,
    latency:percentile(99) / 1000, b, d, s,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    string.gsub(f, '[%c"\\]', " ")))
end
"""

HEALTHZ_SCRIPT = r"""
function done(summary, latency, requests)
  io.write(string.format('WRK {"requests": %d, "seconds": %f, "p99_ms": %f, "bad": %d, "dup": 0, "sent": 0, ' ..
    '"socket_errors": %d, "first_bad": ""}\n', summary.requests, summary.duration / 1e6,
    latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def drive_wrk(
    port: int, mode: str, seconds: float, secret: str, missions: list[dict[str, Any]]
) -> tuple[float, float, int]:
    """The same phase driven by wrk: requests/s, p99 ms and the 200 answers; every delivery signed ahead."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    connections = PROCS * THREADS
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "phase.lua")
        script.write_text(WRK_SCRIPT if mode == "webhook" else HEALTHZ_SCRIPT)
        prepared = Path(tmp, "deliveries")
        if mode == "webhook":
            per_thread = int(seconds * WRK_PREPARED_PER_SECOND / WRK_THREADS) + 1
            for t in range(1, WRK_THREADS + 1):
                with open(f"{prepared}.{t}", "w") as out:
                    for i in range(per_thread):
                        path, body, headers = _delivery(key, missions[(t * 7919 + i) % len(missions)])
                        out.write(f"{path}\t{headers['webhook-id']}\t{headers['webhook-timestamp']}\t"
                                  f"{headers['webhook-signature']}\t{body.decode()}\n")  # fmt: skip
        target = f"http://127.0.0.1:{port}" + ("/healthz" if mode == "healthz" else "/")
        command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
                   "-s", str(script), target, "--", str(prepared)]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False)
    line = next((x for x in run.stdout.splitlines() if x.startswith("WRK ")), None)
    if run.returncode != 0 or line is None:
        raise SystemExit(f"{mode}: wrk failed ({run.returncode}): {run.stderr.strip()[:300]} {run.stdout[-300:]}")
    result = json.loads(line[4:])
    if result["bad"] or result["dup"] or result["socket_errors"]:
        raise SystemExit(f"{mode}: {result}")
    if mode == "webhook" and result["sent"] > int(seconds * WRK_PREPARED_PER_SECOND):
        raise SystemExit(f"{mode}: wrk sent more deliveries than were prepared: {result}")
    return result["requests"] / result["seconds"], result["p99_ms"], result["requests"]


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_webhook: skipped, needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")
        return 0
    from benchmarks._server import django_setup, fleet_create, served, server_env, throwaway_database

    django_setup(url)
    import importlib.util

    from missions.events import Actor
    from missions.models import Carrier
    from missions.models.telemetry import TelemetryWindowEvent
    from missions.partner import services as partner_services

    with throwaway_database("webhook") as db_url:
        carrier = Carrier.objects.create(name="Bench Autonomous", slug="bench", kind="autonomous",
                                         max_autonomy_level=4, operating_regions=[])  # fmt: skip
        secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.system("bench")).secret
        missions = [
            {"id": m.pk, "vehicle": m.vehicle.external_id, "path": f"/api/v1/webhooks/{carrier.slug}"}
            for m in fleet_create(carrier, MISSIONS)
        ]
        from django.db import connection

        connection.close()
        servers = ["daphne"]
        if importlib.util.find_spec("gunicorn") is not None:
            servers.append("gunicorn")
        else:
            print("gunicorn is not installed: WSGI figures skipped")
        env = server_env(db_url)
        loader = f"wrk, {WRK_THREADS} threads" if LOADER == "wrk" else f"{PROCS} Python load processes"
        print(
            f"single-event signed webhooks, {loader}, {PROCS * THREADS} keep-alive connections, {SECONDS:.0f} s a phase"
        )
        print(
            f"{'server':28} {'/healthz req/s':>15} {'webhook req/s':>14} {'webhook p99 ms':>15}"
            f" {'webhook / healthz':>18}"
        )
        measure = drive_wrk if LOADER == "wrk" else drive
        accepted = 0
        for kind in servers:
            port = free_port()
            with served(kind, port, env):
                drive(port, "healthz", 1.0, secret, missions)  # warm-up: pool, code paths
                drive(port, "webhook", 1.5, secret, missions)
                before = TelemetryWindowEvent.objects.count()
                base_rps, _, _ = measure(port, "healthz", SECONDS, secret, missions)
                rps, p99, answered = measure(port, "webhook", SECONDS, secret, missions)
                stored = TelemetryWindowEvent.objects.count() - before
                # Each 200 said "stored, not a duplicate": all must be there. wrk stops with requests in
                # flight whose answers it does not count, at most one a connection.
                if not answered <= stored <= answered + PROCS * THREADS:
                    raise SystemExit(f"{kind}: {answered:,} deliveries acknowledged but {stored:,} events stored")
                connection.close()
            label = "daphne (ASGI: the console)" if kind == "daphne" else "gunicorn (make run's partner port)"
            print(f"{label:28} {base_rps:15,.0f} {rps:14,.0f} {p99:15.1f} {rps / base_rps:18.2f}")
            print(f"  {stored:,} events persisted in the window table during the measured phase")
            accepted += stored
            if kind == "gunicorn":  # what make run and the partner-ingest deployment serve webhooks with
                figure(name="signed webhook, 1 event, as make run serves it (gunicorn)", measured=rps,
                       unit="req/s", baseline=base_rps, baseline_name="req/s /healthz",
                       target=f">= {RATE_TARGET:,.0f} req/s and >= {SHARE_TARGET:.0%} of /healthz",
                       met=rps >= RATE_TARGET and rps >= SHARE_TARGET * base_rps)  # fmt: skip
            else:
                figure(name=f"signed webhook, 1 event, {kind}", measured=rps, unit="req/s", baseline=base_rps,
                       baseline_name="req/s /healthz", target=f">= {TARGET:,.0f} req/s", met=rps >= TARGET)  # fmt: skip
        if not accepted:
            raise SystemExit("no webhook event was persisted")
        print(f"targets: >= {TARGET:,.0f} requests/s (DESIGN.md §6); as make run serves webhooks (gunicorn):"
              f" >= {RATE_TARGET:,.0f} requests/s and >= {SHARE_TARGET:.0%} of /healthz")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
