"""Telemetry for browser tests: events as a carrier sends them, and what the live map has plotted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import Page

from missions.models import Carrier, Mission
from missions.telemetry.ingest import ingest_events
from tests.browser.support import LIVE_TIMEOUT_MS, off_loop

# The map's plotted trace keyed by mission id: position, colour and hover text of each truck.
READ_TRUCKS = """() => {
  const el = document.getElementById("livemap");
  if (!el || !el.data || !el.data.length) return {};
  const t = el.data[0], out = {};
  (t.customdata || []).forEach((id, i) => {
    out[id] = {lat: t.lat[i], lon: t.lon[i], color: t.marker.color[i], text: t.text[i]};
  });
  return out;
}"""


def telemetry(mission: Mission, *, at: datetime, lat: float, lon: float, speed_kph: float) -> dict[str, Any]:
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
        "autonomy_mode": "autonomous",
    }


def send(carrier: Carrier, *events: dict[str, Any]) -> None:
    """Ingest as the telemetry endpoints do, committed from a loop-free thread (like another process)."""
    result = off_loop(ingest_events, carrier=carrier, events=list(events), source="http")
    assert result.accepted == len(events), result.as_dict()


def trucks(page: Page) -> dict[str, dict[str, Any]]:
    """What the map has plotted right now, keyed by mission id (as a string)."""
    return {str(k): v for k, v in page.evaluate(READ_TRUCKS).items()}


def wait_for_truck_at(page: Page, mission: Mission, lat: float) -> None:
    """Until the map has drawn the mission's truck at this latitude."""
    page.wait_for_function(
        f"() => {{ const t = ({READ_TRUCKS})()[{mission.pk}]; return !!t && Math.abs(t.lat - {lat}) < 1e-6; }}",
        timeout=LIVE_TIMEOUT_MS,
    )
