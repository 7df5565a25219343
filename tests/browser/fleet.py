"""Telemetry for browser tests: events as a carrier sends them, and what the live map has plotted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import Page

from missions.models import Carrier, Mission
from missions.telemetry.ingest import ingest_events
from tests.browser.support import LIVE_TIMEOUT_MS, off_loop

# The map's plotted trucks keyed by mission id: position, colour, symbol, hover text, and the label drawn
# beside a lost truck (the trucks' plot is #livemap; the states and routes are drawn underneath it).
READ_TRUCKS = """() => {
  const el = document.getElementById("livemap");
  const data = el && el.data ? el.data : [];
  const t = data.find((trace) => trace.name === "trucks");
  const l = data.find((trace) => trace.name === "lost-labels");
  const out = {};
  if (!t) return out;
  (t.customdata || []).forEach((id, i) => {
    const j = l ? l.lat.findIndex((lat, k) => lat === t.lat[i] && l.lon[k] === t.lon[i]) : -1;
    out[id] = {lat: t.lat[i], lon: t.lon[i], color: t.marker.color[i], symbol: t.marker.symbol[i],
               label: j >= 0 ? l.text[j] : "", text: t.hovertext[i]};
  });
  return out;
}"""

# The routes drawn underneath the trucks: each trace as a list of polylines (lists of [lat, lon]), and the ends.
READ_ROUTES = """() => {
  const el = document.getElementById("livemap-routes");
  const out = {};
  (el && el.data ? el.data : []).forEach((trace) => {
    if (trace.name === "route-ends") {
      out[trace.name] = trace.lat.map((lat, i) => [lat, trace.lon[i], trace.marker.symbol[i]]);
      return;
    }
    if (!trace.name || !trace.name.startsWith("route")) return;
    const lines = [];
    let line = [];
    trace.lat.forEach((lat, i) => {
      if (lat === null) { if (line.length) lines.push(line); line = []; } else { line.push([lat, trace.lon[i]]); }
    });
    if (line.length) lines.push(line);
    out[trace.name] = lines;
  });
  return out;
}"""


def telemetry(
    mission: Mission, *, at: datetime, lat: float, lon: float, speed_kph: float, mode: str = "autonomous"
) -> dict[str, Any]:
    """One position report in the normalized telemetry event format (schema version 1)."""
    assert mission.vehicle is not None
    return {
        "schema_version": "1",
        "event_id": str(uuid.uuid4()),
        "mission_id": mission.pk,
        "vehicle_id": mission.vehicle.external_id,
        "correlation_id": str(mission.correlation_id),
        "ts": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "position": {"lat": lat, "lon": lon, "speed_kph": speed_kph, "heading_deg": 160.0, "accuracy_m": 3.0},
        "mission_state": "en_route",
        "connectivity": {"uplink": "5g", "packet_loss_pct": 0.1, "latency_ms": 38},
        "autonomy_mode": mode,
    }


def send(carrier: Carrier, *events: dict[str, Any]) -> None:
    """Ingest as the telemetry endpoints do, committed from a loop-free thread (like another process)."""
    result = off_loop(ingest_events, carrier=carrier, events=list(events), source="http")
    assert result.accepted == len(events), result.as_dict()


def trucks(page: Page) -> dict[str, dict[str, Any]]:
    """What the map has plotted right now, keyed by mission id (as a string)."""
    return {str(k): v for k, v in page.evaluate(READ_TRUCKS).items()}


def routes_drawn(page: Page) -> dict[str, Any]:
    """The route traces drawn right now: {"routes": [[[lat, lon], ...], ...], "routes-at-risk": ..., ...}."""
    return dict(page.evaluate(READ_ROUTES))


def wait_for_truck_at(page: Page, mission: Mission, lat: float) -> None:
    """Until the map has drawn the mission's truck at this latitude."""
    page.wait_for_function(
        f"() => {{ const t = ({READ_TRUCKS})()[{mission.pk}]; return !!t && Math.abs(t.lat - {lat}) < 1e-6; }}",
        timeout=LIVE_TIMEOUT_MS,
    )
