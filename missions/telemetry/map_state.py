"""Read side of the live map and the mission telemetry charts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from django.db.models import Count, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from missions.choices import ExceptionStatus
from missions.models import Carrier, Mission, MissionException, RoutePlan, TelemetrySample
from missions.routes import Polyline, route_plan
from missions.telemetry.map_eta import MissionRoute
from missions.telemetry.normalize import ts_format
from missions.terms import gap_threshold
from missions.transitions import MISSION_ACTIVE

TRACK_POINTS_MAX = 5000


# What the map needs of each mission, read as plain values: building the mission, carrier, vehicle and
# shipment model instances cost about 0.2 ms a row (1.2 s for a 5,000-truck snapshot), the query 70 ms.
_FLEET_COLUMNS = (
    "pk",
    "vehicle__external_id",
    "carrier__name",
    "shipment__reference",
    "status",
    "autonomy_mode",
    "last_lat",
    "last_lon",
    "last_speed_kph",
    "last_seen_at",
    "gap_s",
)


def comms_thresholds(gap_s: int | float) -> tuple[float, float]:
    """(stale after, lost after) in seconds of silence, from the contract's telemetry-gap threshold.

    Lost is the gap itself: past it gap detection raises a lost-comms exception. Stale is half of it:
    the dispatcher sees a truck going quiet before the alarm.
    """
    lost_after = float(gap_s)
    return lost_after / 2, lost_after


def comms_state(last_seen_at: datetime | None, *, gap_s: int | float, now: datetime) -> str:
    """``live``, ``stale`` or ``lost``: how long the truck has been silent against its thresholds."""
    stale_after, lost_after = comms_thresholds(gap_s)
    if last_seen_at is None:
        return "lost"
    silent = (now - last_seen_at).total_seconds()
    return "lost" if silent > lost_after else ("stale" if silent > stale_after else "live")


def _row(values: tuple[Any, ...] | list[Any], *, open_exceptions: int, now: datetime) -> dict[str, Any]:
    mission_id, vehicle_id, carrier, shipment, status, mode, lat, lon, speed, last_seen_at, gap_s = values
    stale_after, lost_after = comms_thresholds(gap_s)
    comms = comms_state(last_seen_at, gap_s=gap_s, now=now)
    return {
        "mission_id": mission_id,
        "vehicle_id": vehicle_id,
        "carrier": carrier,
        "shipment": shipment,
        "status": status,
        "autonomy_mode": mode,
        "lat": lat,
        "lon": lon,
        "speed_kph": speed,
        "last_seen_at": ts_format(last_seen_at) if last_seen_at else None,
        "stale_after_s": stale_after,
        "lost_after_s": lost_after,
        "comms": comms,
        "stale": comms != "live",  # stale or lost
        "open_exceptions": open_exceptions,
    }


def _fleet_rows(*, now: datetime, since: datetime | None = None) -> list[dict[str, Any]]:
    missions = Mission.objects.filter(status__in=MISSION_ACTIVE, last_lat__isnull=False)
    if since is not None:
        missions = missions.filter(updated_at__gt=since)
    rows = list(missions.annotate(gap_s=gap_threshold(today=now.date())).order_by("pk").values_list(*_FLEET_COLUMNS))
    # Open exceptions are few: counted apart instead of grouping the whole fleet query by mission.
    opened = MissionException.objects.filter(status=ExceptionStatus.OPEN, mission__status__in=MISSION_ACTIVE)
    if since is not None:
        opened = opened.filter(mission_id__in=[r[0] for r in rows])
    counts = dict(opened.values("mission_id").annotate(n=Count("pk")).values_list("mission_id", "n"))
    return [_row(r, open_exceptions=counts.get(r[0], 0), now=now) for r in rows]


def fleet_state(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every active mission with a known position: what the map draws on connect."""
    return _fleet_rows(now=now or timezone.now())


def fleet_changed_since(*, since: datetime, now: datetime | None = None) -> list[dict[str, Any]]:
    """Missions changed after ``since`` (our clock): the map's fallback when no shared channel layer exists."""
    return _fleet_rows(now=now or timezone.now(), since=since)


# What the browser and the ETA need of each mission once: its planned route, lane and delivery window.
# The route is read as text and parsed with orjson (Django's JSONField decoder is several times slower).
_ROUTE_COLUMNS = (
    "pk",
    "route_json",
    "planned_route_km",
    "planned_route_basis",
    "shipment__origin_address",
    "shipment__origin_lat",
    "shipment__origin_lon",
    "shipment__destination_address",
    "shipment__destination_lat",
    "shipment__destination_lon",
    "shipment__delivery_window_start",
    "shipment__delivery_window_end",
    "eta",
    "carrier__name",
    "shipment__reference",
    "gap_s",
)


def verified_plans(mission_ids: Iterable[int] | QuerySet[Any], *, now: datetime) -> dict[int, dict[str, Any]]:
    """Each mission's latest verified signed route plan (docs/decisions/0024-signed-route-plans.md)."""
    found: dict[int, dict[str, Any]] = {}
    rows = (
        RoutePlan.objects.filter(mission_id__in=mission_ids if isinstance(mission_ids, QuerySet) else list(mission_ids))
        .order_by("mission_id", "-version")
        .values_list("mission_id", "version", "sha256", "waypoints", "valid_from", "valid_until")
    )
    for mission_id, version, sha256, waypoints, valid_from, valid_until in rows:
        if mission_id in found:
            continue  # an older version: superseded
        found[mission_id] = {
            "version": version,
            "sha256": sha256,
            "points": waypoints,
            "valid_from": ts_format(valid_from),
            "valid_until": ts_format(valid_until),
            "current": valid_from <= now < valid_until,
            "label": f"verified plan v{version}",
        }
    return found


def _mission_route(values: tuple[Any, ...], plan: dict[str, Any] | None = None) -> MissionRoute:
    (
        mission_id,
        route_json,
        stored_km,
        stored_basis,
        origin_address,
        origin_lat,
        origin_lon,
        destination_address,
        destination_lat,
        destination_lon,
        window_start,
        window_end,
        carrier_eta,
        carrier,
        shipment,
        gap_s,
    ) = values
    stored = orjson.loads(route_json) if route_json else None
    if stored and len(stored) >= 2:
        points: tuple[tuple[float, float], ...] = tuple((p[0], p[1]) for p in stored)
        km, basis = stored_km, stored_basis
    else:
        # Missions written around the services (bulk loads, older rows): planned now, the same way.
        planned = route_plan((origin_lat, origin_lon), (destination_lat, destination_lon))
        points, km, basis = planned.points, planned.km, planned.basis
    wire_points = stored if stored and len(stored) >= 2 else [[lat, lon] for lat, lon in points]
    verified_plan = None
    if plan is not None:
        # The carrier's signed plan is the route the truck drives: it replaces the console's estimate, on
        # the map and for the ETA; the console's own route is kept beside it for comparison.
        verified_plan = {key: value for key, value in plan.items() if key != "points"}
        verified_plan["planned_basis"] = basis
        points = tuple((p[0], p[1]) for p in plan["points"])
        wire_points = plan["points"]
        km, basis = round(Polyline(points).length_km, 1), plan["label"]
    stale_after, lost_after = comms_thresholds(gap_s)
    wire = {
        "mission_id": mission_id,
        "points": wire_points,
        "km": km if km is not None else round(Polyline(points).length_km, 1),
        "basis": basis,
        "carrier": carrier,
        "shipment": shipment,
        "origin": {"address": origin_address, "lat": origin_lat, "lon": origin_lon},
        "destination": {"address": destination_address, "lat": destination_lat, "lon": destination_lon},
        "delivery_window_start": ts_format(window_start),
        "delivery_window_end": ts_format(window_end),
        "carrier_eta": ts_format(carrier_eta) if carrier_eta else None,
        "stale_after_s": stale_after,
        "lost_after_s": lost_after,
        "verified_plan": verified_plan,
    }
    return MissionRoute(
        mission_id=mission_id,
        points=points,
        destination=(destination_lat, destination_lon),
        window_end_s=window_end.timestamp(),
        carrier_eta_s=carrier_eta.timestamp() if carrier_eta else None,
        wire=wire,
    )


def mission_routes(
    *, mission_ids: Iterable[int] | None = None, now: datetime | None = None, lines: bool = False
) -> list[MissionRoute]:
    """Planned routes with their lane and delivery window: of ``mission_ids``, or of every truck on the map.

    ``lines``: build each route's polyline here (the ETA needs it; a browser only needs the points), so
    the caller's event loop does not.
    """
    now = now or timezone.now()
    missions = Mission.objects.all()
    if mission_ids is None:
        missions = missions.filter(status__in=MISSION_ACTIVE, last_lat__isnull=False)
    else:
        missions = missions.filter(pk__in=list(mission_ids))
    rows = (
        missions.annotate(gap_s=gap_threshold(today=now.date()), route_json=Cast("planned_route", TextField()))
        .order_by("pk")
        .values_list(*_ROUTE_COLUMNS)
    )
    # A subquery, not a list of ids: the map may ask for every truck's route at once.
    plans = verified_plans(missions.values("pk"), now=now)
    routes = [_mission_route(r, plans.get(r[0])) for r in rows]
    if lines:
        for route in routes:
            route.line  # noqa: B018 (built now, on this thread)
    return routes


def mission_map_detail(*, mission_id: int, now: datetime | None = None) -> dict[str, Any] | None:
    """What the map shows when a truck is clicked: the mission, its speed, mode, last seen and open exceptions."""
    now = now or timezone.now()
    values = (
        Mission.objects.filter(pk=mission_id)
        .annotate(
            gap_s=gap_threshold(today=now.date()),
            open_exceptions=Count("exceptions", filter=Q(exceptions__status=ExceptionStatus.OPEN)),
        )
        .values_list(
            *_FLEET_COLUMNS, "open_exceptions", "shipment__origin_address", "shipment__destination_address", "eta"
        )
        .first()
    )
    if values is None:
        return None
    *fleet_values, open_exceptions, origin, destination, eta = values
    row = _row(fleet_values, open_exceptions=open_exceptions, now=now)
    row["origin"] = origin
    row["destination"] = destination
    row["eta"] = ts_format(eta) if eta else None
    row["exceptions"] = [
        {
            "id": e.pk,
            "kind": e.kind,
            "label": e.get_kind_display(),
            "detail": e.detail[:200],
            "occurred_at": ts_format(e.occurred_at),
        }
        for e in MissionException.objects.filter(mission_id=mission_id, status=ExceptionStatus.OPEN).order_by(
            "-occurred_at"
        )[:20]
    ]
    row["url"] = f"/missions/{mission_id}/"
    return row


def carrier_names() -> list[str]:
    """Every carrier's name, for the map's carrier filter."""
    return list(Carrier.objects.order_by("name").values_list("name", flat=True))


def mission_telemetry_series(*, mission_id: int, since: datetime | None = None) -> dict[str, Any]:
    """The mission page's track and charts: time, position, speed, mode and connectivity per sample."""
    qs = TelemetrySample.objects.filter(mission_id=mission_id)
    if since is not None:
        qs = qs.filter(recorded_at__gt=since)
    rows = list(
        qs.order_by("-recorded_at").values_list("recorded_at", "lat", "lon", "speed_kph", "autonomy_mode", "data")[
            :TRACK_POINTS_MAX
        ]
    )
    rows.reverse()
    series: dict[str, list[Any]] = {
        "ts": [],
        "lat": [],
        "lon": [],
        "speed_kph": [],
        "autonomy_mode": [],
        "uplink": [],
        "latency_ms": [],
        "packet_loss_pct": [],
    }
    for ts, lat, lon, speed, mode, data in rows:
        conn = (data or {}).get("connectivity", {})
        series["ts"].append(ts_format(ts))
        series["lat"].append(lat)
        series["lon"].append(lon)
        series["speed_kph"].append(speed)
        series["autonomy_mode"].append(mode or None)
        series["uplink"].append(conn.get("uplink"))
        series["latency_ms"].append(conn.get("latency_ms"))
        series["packet_loss_pct"].append(conn.get("packet_loss_pct"))
    return {"mission_id": mission_id, "points": len(rows), "truncated": len(rows) == TRACK_POINTS_MAX, **series}
