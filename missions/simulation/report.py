"""A run's JSON summary and its self-contained offline HTML report (plotly's JS inlined, no CDN).

The report shows the SLIs per simulated day against their targets (the engine's and the
record's), the error budget left, the incidents with their time to failover and time to
resolve, the credits, and the ground-truth comparison table.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from missions.simulation import profile as p
from missions.simulation.program import RunResult, settings_summary

DAY_SLIS = ("on_time", "mission_success", "telemetry_integrity")


def summary(result: RunResult) -> dict[str, Any]:
    """The JSON summary: the run, what the fleet did, the comparison and its mismatches."""
    record, comparison = result.record, result.comparison
    outcomes = Counter(m.outcome or "running" for m in record.missions.values())
    faults = Counter(m.fault for m in record.missions.values() if m.fault)
    day_rows = [r for r in comparison.rows if r.window == "24h"]
    return {
        "run": {
            "profile": result.profile.name, "seed": result.seed, "days": result.days, "trucks": result.trucks,
            "start": record.start.isoformat(), "end": record.end.isoformat(),
            "wall_seconds": round(result.wall_seconds, 1),
            "telemetry_events": result.events, "transport": result.transport, **settings_summary(),
        },
        "passed": comparison.passed,
        "mismatches": comparison.mismatches,
        "fleet": {
            "missions": len(record.missions), "outcomes": dict(outcomes), "faults": dict(faults),
            "samples_sent": record.samples_sent, "duplicates_sent": record.duplicates_sent,
            "refusals": record.refusals,
        },
        "carrier_api": _carrier_api(record),
        "fault_kinds": {"simulated": [*p.FAULT_KINDS, *(f"carrier API {k}" for k in p.API_FAULT_KINDS)],
                        "not_covered": list(p.NOT_COVERED)},
        "slis_per_day": [_row(r) for r in day_rows],
        "comparison": [_row(r) for r in comparison.rows],
        "incidents": [i.as_dict() for i in record.incidents],
        "credits": comparison.credits,
    }  # fmt: skip


def _carrier_api(record: Any) -> dict[str, Any]:
    """The push carrier's API: its fault windows and the calls made to it, by window kind and answer."""
    calls = Counter((c.fault or "none", "no answer" if c.status is None else str(c.status)) for c in record.api_calls)
    return {
        "carrier": record.api_carrier, "windows": record.api_windows, "calls": len(record.api_calls),
        "calls_by_fault_and_status": [{"fault": f, "status": st, "calls": n} for (f, st), n in sorted(calls.items())],
        "loads_rebooked": record.api_rebooked,
    }  # fmt: skip


def _row(r: Any) -> dict[str, Any]:
    return {
        "checkpoint": r.checkpoint, "carrier": r.carrier, "window": r.window, "sli": r.sli, "engine": r.engine,
        "truth": r.truth, "target": r.target, "budget_remaining_pct": r.budget_remaining_pct, "ok": r.ok,
        "mission_ids": r.mission_ids,
    }  # fmt: skip


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _slis_per_day(data: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for row_sli in DAY_SLIS:
        rows = [r for r in data["slis_per_day"] if r["sli"] == row_sli]
        for carrier in sorted({r["carrier"] for r in rows}):
            mine = [r for r in rows if r["carrier"] == carrier]
            x = [r["checkpoint"] for r in mine]
            fig.add_scatter(x=x, y=[_num(r["engine"].get("value")) for r in mine], mode="lines+markers",
                            name=f"{carrier} {row_sli} (engine)")  # fmt: skip
            fig.add_scatter(x=x, y=[_num(r["truth"]["value"]) for r in mine], mode="markers",
                            marker={"symbol": "x", "size": 10}, name=f"{carrier} {row_sli} (record)")  # fmt: skip
            fig.add_scatter(x=x, y=[_num(r["target"]) for r in mine], mode="lines", line={"dash": "dot"},
                            name=f"{carrier} {row_sli} target")  # fmt: skip
    fig.update_layout(title="SLIs per simulated day (24 h window at each midnight) against target",
                      yaxis_title="%", height=520)  # fmt: skip
    return fig


def _budget(data: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for row_sli in DAY_SLIS:
        rows = [r for r in data["slis_per_day"] if r["sli"] == row_sli]
        for carrier in sorted({r["carrier"] for r in rows}):
            mine = [r for r in rows if r["carrier"] == carrier]
            fig.add_bar(x=[r["checkpoint"] for r in mine], y=[_num(r["budget_remaining_pct"]) for r in mine],
                        name=f"{carrier} {row_sli}")  # fmt: skip
    fig.update_layout(title="Error budget left per day (engine; 100 = untouched, below 0 = overspent)",
                      yaxis_title="% of budget left", barmode="group", height=420)  # fmt: skip
    return fig


def _incidents(data: dict[str, Any]) -> go.Figure:
    from datetime import datetime

    def seconds(a: str | None, b: str | None) -> float | None:
        if not a or not b:
            return None
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()

    fig = go.Figure()
    incidents = data["incidents"]
    ttf = [s for i in incidents if (s := seconds(i["triggered_at"], i["failover_at"])) is not None]
    fig.add_box(y=ttf, name="time to failover (lost comms)", boxpoints="all")
    for kind in sorted({i["kind"] for i in incidents}):
        ttr = [s for i in incidents if i["kind"] == kind and (s := seconds(i["triggered_at"], i["resolved_at"]))]
        fig.add_box(y=ttr, name=f"time to resolve: {kind}", boxpoints="all")
    fig.update_layout(title="Incidents: time to failover and time to resolve", yaxis_title="seconds", height=420)
    return fig


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(data: dict[str, Any]) -> str:
    """The whole report as one HTML document that needs no network."""
    run = data["run"]
    figures = [_slis_per_day(data), _budget(data), _incidents(data)]
    charts = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figures)
    verdict = "PASSED" if data["passed"] else f"FAILED: {len(data['mismatches'])} mismatches"
    mismatches = _table(
        ["what", "checkpoint", "carrier", "window", "sli", "engine", "record", "missions"],
        [[m.get("what"), m.get("checkpoint"), m.get("carrier"), m.get("window"), m.get("sli") or m.get("problem"),
          json.dumps(m.get("engine") or m.get("issued_usd")), json.dumps(m.get("truth") or m.get("expected_usd")),
          ", ".join(str(i) for i in m.get("mission_ids", []))] for m in data["mismatches"]],
    )  # fmt: skip
    comparison = _table(
        ["checkpoint", "carrier", "window", "sli", "engine good/total", "record good/total", "engine value",
         "record value", "target", "match"],
        [[r["checkpoint"], r["carrier"], r["window"], r["sli"],
          f"{r['engine'].get('good')}/{r['engine'].get('total')}", f"{r['truth']['good']}/{r['truth']['total']}",
          r["engine"].get("value"), r["truth"]["value"], r["target"], "yes" if r["ok"] else "NO"]
         for r in data["comparison"]],
    )  # fmt: skip
    credits = _table(
        ["month", "carrier", "sli", "attainment %", "schedule implies (USD)", "issued (USD)", "match"],
        [[c["month"], c["carrier"], c["sli"], c["attainment_pct"], c["expected_usd"], c["issued_usd"],
          "yes" if c["ok"] else "NO"] for c in data["credits"]],
    )  # fmt: skip
    fleet = data["fleet"]
    facts = _table(
        ["missions", "outcomes", "faults", "samples sent", "duplicates sent", "refusals"],
        [[fleet["missions"], json.dumps(fleet["outcomes"]), json.dumps(fleet["faults"]), fleet["samples_sent"],
          fleet["duplicates_sent"], len(fleet["refusals"])]],
    )  # fmt: skip
    api = data["carrier_api"]
    api_windows = _table(["kind", "from", "to"], [[w["kind"], w["start"], w["end"]] for w in api["windows"]])
    api_calls = _table(
        ["fault window", "answer", "calls"],
        [[c["fault"], c["status"], c["calls"]] for c in api["calls_by_fault_and_status"]],
    )
    title = (
        f"Program simulation: {run['profile']} profile, {run['days']} days, {run['trucks']} trucks, seed {run['seed']}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5rem}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}}</style>
<script>{get_plotlyjs()}</script></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(run["start"])} to {html.escape(run["end"])} (simulated), {run["wall_seconds"]} s wall, database
{html.escape(str(run["database"]))}. Ground-truth comparison: <strong>{html.escape(verdict)}</strong></p>
<h2>What the fleet did</h2>{facts}
<h2>Carrier API of {html.escape(api["carrier"] or "(none)")}</h2>
<p>{api["calls"]} calls through the fault proxy; {api["loads_rebooked"]} loads booked again because their tender
never reached the carrier.</p>{api_windows}{api_calls}
<h2>Charts</h2>{charts}
<h2>Mismatches</h2>{mismatches}
<h2>Credits</h2>{credits}
<h2>Ground-truth comparison</h2>{comparison}
</body></html>
"""


def reports_write(result: RunResult, directory: Path) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``report.html`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    data = summary(result)
    json_path, html_path = directory / "summary.json", directory / "report.html"
    json_path.write_text(json.dumps(data, indent=2, default=str))
    html_path.write_text(html_report(data))
    return json_path, html_path
