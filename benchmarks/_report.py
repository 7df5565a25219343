"""Shared plumbing of the benchmark scripts: the throw-away database name and the figures they report.

Each ``bench_*.py`` prints its own detailed lines and, through ``figure()``,
appends one JSON line per figure to the file named by ``BENCH_RESULTS``
(set by ``run_all.py``), which prints them all in one summary table.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any


def bench_db_name(base: str, suffix: str) -> str:
    """``<database of DATABASE_URL>_bench_<suffix>``: never the database you work in, never another script's."""
    return f"{base}_bench_{suffix}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.4999) - 1))
    return ordered[index]


def figure(
    *,
    name: str,
    measured: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    met: bool | None = None,
    ratio: float | None = None,
) -> None:
    """Record one figure for the summary (no-op when the script runs on its own)."""
    if ratio is None and measured is not None and baseline:
        ratio = measured / baseline
    record: dict[str, Any] = {
        "name": name,
        "measured": measured,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio,
        "target": target,
        "met": met,
    }
    path = os.environ.get("BENCH_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
