#!/usr/bin/env python
"""Run every benchmark on PostgreSQL and print one summary table (what ``make bench`` calls).

Each script runs in its own process and its own throw-away database, with a
time limit (``BENCH_TOTAL_SECONDS``, default 2,700 s, for the whole run; each
script also has its own cap), so ``make bench`` always ends. The table lists
every figure next to the baseline measured in the same run, their ratio, the
target (DESIGN.md §6) and whether it was met.

    DATABASE_URL=postgres://root@127.0.0.1:5432/tms_bench .venv/bin/python benchmarks/run_all.py [bench_sla ...]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "postgres://root@127.0.0.1:5432/tms_bench"
# (script, time cap in seconds), cheapest first.
SCRIPTS = [
    ("bench_ingest", 120),
    ("bench_webhook", 120),
    # One day's sample partition dropped, against a chunked DELETE of the same rows (projected to a fleet's day).
    ("bench_retention", 240),
    # Batch ingest and signed webhooks with tracing off and on (span store), four gunicorn phases ABBA.
    ("bench_tracing", 420),
    ("bench_limiter", 240),
    # 1,000 then 10,000 trucks at 1 Hz (over ws/ingest/, then stored by another process) to 20 dashboards.
    ("bench_livemap", 300),
    ("bench_tender_api", 180),
    # Two sizes (100,000 and 1,000,000 missions), each generated in SQL and backfilled into the buckets.
    ("bench_sla", 1500),
    # Its own nats-server: a raw publish loop, the relay over 50,000 events, lag under a 10,000-truck fleet.
    ("bench_bus", 180),
    # 10,000 trucks at 1 Hz with beat and a worker: 500 fall silent, each alarm timed from its threshold.
    ("bench_gaps", 240),
    # Mostly waiting (the recovery timeout, a step lease): three lost-comms failovers in real time.
    ("bench_failover", 240),
    # 100,000 events as one NDJSON upload against the batch endpoint (ABBA), on gunicorn and daphne.
    ("bench_backfill", 420),
]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def _run(script: str, cap: float, env: dict[str, str]) -> tuple[int | None, float]:
    print(f"\n== benchmarks/{script}.py (at most {cap:.0f} s)", flush=True)
    t0 = time.monotonic()
    # Its own process group, so a timeout also stops the servers the script started.
    proc = subprocess.Popen([sys.executable, str(HERE / f"{script}.py")], env=env, start_new_session=True)
    try:
        code: int | None = proc.wait(cap)
    except subprocess.TimeoutExpired:
        print(f"{script}: stopped after {cap:.0f} s", flush=True)
        # SIGINT first: the script's finally blocks stop its servers and drop its database.
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        code = None
    # Whatever the script left behind in its process group (a server that ignored the shutdown) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return code, time.monotonic() - t0


def main(argv: list[str]) -> int:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith(("postgres://", "postgresql://")):
        print(f"make bench measures PostgreSQL; DATABASE_URL is {url.split(':', 1)[0]}:// (set a postgres:// URL)")
        return 2
    wanted = set(argv)
    scripts = [(s, cap) for s, cap in SCRIPTS if not wanted or s in wanted]
    budget = float(os.environ.get("BENCH_TOTAL_SECONDS", "2700"))
    deadline = time.monotonic() + budget
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="bench-") as results:
        env = {**os.environ, "DATABASE_URL": url, "BENCH_DATABASE_URL": url, "BENCH_RESULTS": results.name}
        status: dict[str, str] = {}
        for script, cap in scripts:
            left = deadline - time.monotonic()
            if left < 20:
                status[script] = "not run (time budget spent)"
                continue
            code, took = _run(script, min(cap, left), env)
            status[script] = f"stopped at {took:.0f} s" if code is None else f"exit {code} in {took:.0f} s"
        records: list[dict[str, Any]] = [json.loads(line) for line in results.read().splitlines() if line.strip()]

    print("\n== Summary (PostgreSQL; each baseline measured in the same run)")
    header = f"{'figure':58} {'measured':>16} {'baseline':>34} {'ratio':>7}  {'target':24} met?"
    print(header)
    print("-" * len(header))
    for r in records:
        baseline = f"{_fmt(r['baseline'])} {r['baseline_name']}".strip() if r["baseline"] is not None else "-"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        print(f"{r['name']:58} {_fmt(r['measured'], r['unit']):>16} {baseline:>34} {ratio:>7}  {r['target']:24} {met}")
    for script, text in status.items():
        print(f"  {script}: {text}")
    failed = [s for s, text in status.items() if not text.startswith("exit 0")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
