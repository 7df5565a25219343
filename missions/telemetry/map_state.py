"""Read side of the live map and the mission telemetry charts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from missions.choices import ExceptionStatus
from missions.models import Mission, MissionException, TelemetrySample
from missions.telemetry.gaps import gap_threshold
from missions.telemetry.normalize import ts_format
from missions.transitions import MISSION_ACTIVE

TRACK_POINTS_MAX = 5000


def _vehicle_row(m: Mission, *, now: datetime) -> dict[str, Any]:
    stale_after = int(getattr(m, "gap_s", 60))
    return {
        "mission_id": m.pk,
        "vehicle_id": m.vehicle.external_id if m.vehicle else None,
        "carrier": m.carrier.name,
        "shipment": m.shipment.reference,
        "status": m.status,
        "autonomy_mode": m.autonomy_mode,
        "lat": m.last_lat,
        "lon": m.last_lon,
        "speed_kph": m.last_speed_kph,
        "last_seen_at": ts_format(m.last_seen_at) if m.last_seen_at else None,
        "stale_after_s": stale_after,
        "stale": m.last_seen_at is None or (now - m.last_seen_at).total_seconds() > stale_after,
        "open_exceptions": int(getattr(m, "open_exceptions", 0)),
    }


def _active_missions(*, now: datetime) -> Any:
    return (
        Mission.objects.filter(status__in=MISSION_ACTIVE, last_lat__isnull=False)
        .select_related("carrier", "vehicle", "shipment")
        .annotate(
            gap_s=gap_threshold(today=now.date()),
            open_exceptions=Count("exceptions", filter=Q(exceptions__status=ExceptionStatus.OPEN)),
        )
        .order_by("pk")
    )


def fleet_state(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every active mission with a known position: what the map draws on connect."""
    now = now or timezone.now()
    return [_vehicle_row(m, now=now) for m in _active_missions(now=now)]


def fleet_changed_since(*, since: datetime, now: datetime | None = None) -> list[dict[str, Any]]:
    """Missions changed after ``since`` (our clock): the map's fallback when no shared channel layer exists."""
    now = now or timezone.now()
    return [_vehicle_row(m, now=now) for m in _active_missions(now=now).filter(updated_at__gt=since)]


def mission_map_detail(*, mission_id: int, now: datetime | None = None) -> dict[str, Any] | None:
    """What the map shows when a truck is clicked: the mission, its speed, mode, last seen and open exceptions."""
    now = now or timezone.now()
    mission = (
        Mission.objects.filter(pk=mission_id)
        .select_related("carrier", "vehicle", "shipment")
        .annotate(
            gap_s=gap_threshold(today=now.date()),
            open_exceptions=Count("exceptions", filter=Q(exceptions__status=ExceptionStatus.OPEN)),
        )
        .first()
    )
    if mission is None:
        return None
    row = _vehicle_row(mission, now=now)
    row["origin"] = mission.shipment.origin_address
    row["destination"] = mission.shipment.destination_address
    row["eta"] = ts_format(mission.eta) if mission.eta else None
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
