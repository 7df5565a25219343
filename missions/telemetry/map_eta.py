"""The live map's arrival estimates: where each truck is along its planned route, when it will arrive, how late.

ETA of a truck, from its latest position report:

* on its planned route (within ``OFF_ROUTE_KM``): the distance left along the
  route (plus how far it is off the line) at its recent speed;
* off its route: the carrier's ETA when the carrier gave one (a detour the
  console cannot measure), else the straight distance to the destination at
  its recent speed.

The first report of a mission the process has no route for yet goes out
without an estimate while the route is read; the report goes out again with
its estimate once the route is there.

Recent speed is an exponentially weighted average of the reported speeds
(time constant ``SPEED_TAU_SECONDS``, weighted by the time between reports),
starting from ``PLANNING_SPEED_KPH`` when the process first sees the truck,
and never taken below ``MIN_SPEED_KPH`` (a parked truck is assumed to set off
again, slowly, rather than never to arrive). The ETA is counted from the
report's own time. A truck is at risk when its ETA is later than the end of
its delivery window less the margin (``LIVEMAP_AT_RISK_MARGIN_MINUTES``).

One ``EtaTracker`` per web process, fed by the position frames all its maps
share: every map of the process shows the same estimates. See
docs/decisions/0020-live-map-routes-and-eta.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from missions.models import haversine_km
from missions.routes import LatLon, Polyline

SPEED_TAU_SECONDS = 600.0
PLANNING_SPEED_KPH = 80.0
MIN_SPEED_KPH = 20.0
OFF_ROUTE_KM = 25.0
# Closer than this to the destination (along the route) counts as arrived.
ARRIVED_KM = 0.5
# Trackers forget trucks they have not heard of for this long (finished or handed-over missions).
FORGET_SECONDS = 3600.0

ETA_FIELDS = ("eta", "eta_basis", "remaining_km", "late_s", "at_risk")


@dataclass(frozen=True)
class MissionRoute:
    """What the ETA needs of a mission (its planned route and delivery window) and what the browser is sent once."""

    mission_id: int
    points: tuple[LatLon, ...]
    destination: LatLon
    window_end_s: float  # epoch seconds
    carrier_eta_s: float | None
    wire: dict[str, Any]

    @cached_property
    def line(self) -> Polyline:
        """The route as a polyline, built on first use: a route only sent to a browser never needs one."""
        return Polyline(self.points)


@dataclass
class _Progress:
    speed_kph: float
    at_s: float
    segment: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    position: dict[str, Any] = field(default_factory=dict)  # the latest report


def epoch_s(text: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp (``Z`` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso_z(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class EtaTracker:
    """Per-mission progress (recent speed, last segment) and the ETA fields added to each position."""

    def __init__(self) -> None:
        self.routes: dict[int, MissionRoute] = {}
        self._progress: dict[int, _Progress] = {}

    def routes_add(self, routes: Iterable[MissionRoute]) -> None:
        for route in routes:
            self.routes[route.mission_id] = route

    def tracking(self, mission_id: int) -> bool:
        """True when a position of the mission has been seen (the truck is on the maps)."""
        return mission_id in self._progress

    def latest_position(self, mission_id: int) -> dict[str, Any] | None:
        """A copy of the mission's latest report (to send again once its route is known), or None."""
        progress = self._progress.get(mission_id)
        return dict(progress.position) if progress is not None and progress.position else None

    def latest(self, mission_id: int) -> dict[str, Any]:
        """The ETA fields last computed for the mission (empty when none was)."""
        progress = self._progress.get(mission_id)
        return dict(progress.fields) if progress is not None else {}

    def forget_before(self, cutoff_s: float, *, keep: Iterable[int] = ()) -> None:
        """Drop trucks last heard of before ``cutoff_s`` (epoch seconds), and routes of no truck, except ``keep``."""
        kept = set(keep)

        def gone(mission_id: int) -> bool:
            progress = self._progress.get(mission_id)
            return mission_id not in kept and (progress is None or progress.at_s < cutoff_s)

        for mission_id in [m for m in self._progress if gone(m)]:
            del self._progress[mission_id]
        for mission_id in [m for m in self.routes if gone(m)]:
            del self.routes[mission_id]

    def observe(self, position: dict[str, Any], *, margin_s: float) -> bool:
        """Fold one position report in and add the ETA fields to it; False when the mission's route is unknown."""
        mission_id = position["mission_id"]
        seen = position.get("last_seen_at")
        lat, lon = position.get("lat"), position.get("lon")
        route = self.routes.get(mission_id)
        if not seen or lat is None or lon is None:
            return route is not None
        at_s = epoch_s(seen)
        progress = self._progress.get(mission_id)
        if progress is None or at_s - progress.at_s > FORGET_SECONDS:  # new, or back after a long silence
            progress = self._progress[mission_id] = _Progress(speed_kph=PLANNING_SPEED_KPH, at_s=at_s)
        elif at_s > progress.at_s:
            speed = position.get("speed_kph")
            if speed is not None:
                weight = 1.0 - math.exp(-(at_s - progress.at_s) / SPEED_TAU_SECONDS)
                progress.speed_kph += weight * (float(speed) - progress.speed_kph)
            progress.at_s = at_s
        newest = at_s >= progress.at_s  # an older report (out of order) does not replace the latest
        if newest:
            progress.position = position
        if route is None:
            return False
        fields = self._estimate(route, progress, lat=float(lat), lon=float(lon), at_s=at_s, margin_s=margin_s)
        if newest:
            progress.fields = fields
        position.update(fields)
        return True

    def _estimate(
        self, route: MissionRoute, progress: _Progress, *, lat: float, lon: float, at_s: float, margin_s: float
    ) -> dict[str, Any]:
        speed = max(progress.speed_kph, MIN_SPEED_KPH)
        located = route.line.locate(lat, lon, hint=progress.segment)
        remaining: float | None
        if located.offset_km <= OFF_ROUTE_KM:
            progress.segment = located.segment
            remaining = max(0.0, route.line.length_km - located.along_km) + located.offset_km
            basis = "route"
        elif route.carrier_eta_s is not None:
            remaining, basis = None, "carrier"
        else:
            remaining, basis = haversine_km(lat, lon, *route.destination), "direct"
        if remaining is None:
            assert route.carrier_eta_s is not None
            eta_s = route.carrier_eta_s
        elif remaining <= ARRIVED_KM:
            eta_s = at_s
        else:
            eta_s = at_s + remaining / speed * 3600.0
        late_s = eta_s - route.window_end_s
        return {
            "eta": iso_z(eta_s),
            "eta_basis": basis,
            "remaining_km": None if remaining is None else round(remaining, 1),
            "late_s": round(late_s),
            "at_risk": late_s > -margin_s,
        }
