"""What the console shows about the event bus: the relay's state, each cursor's lag, the refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from missions.bus.publisher import safe_url
from missions.bus.relay import EVENTS, HEARTBEAT_NAME, TELEMETRY, lag
from missions.models.bus import BusRefusal
from tms_console.health import heartbeat_ages, stale_after_seconds
from tms_console.models import ProcessHeartbeat


@dataclass(frozen=True)
class SourceStatus:
    name: str
    stream: str
    position: int
    published: int
    lag_rows: int
    lag_seconds: float


@dataclass(frozen=True)
class BusStatus:
    enabled: bool
    url: str
    relay_state: str  # what the relay last said, or "not running" / "never started"
    relay_age_seconds: float | None
    relay_up: bool
    last_error: str
    sources: list[SourceStatus]
    refused: int


def bus_status() -> BusStatus:
    beat = ProcessHeartbeat.objects.filter(name=HEARTBEAT_NAME).first()
    age = heartbeat_ages().get(HEARTBEAT_NAME)
    detail: dict[str, Any] = dict(beat.detail) if beat else {}
    up = age is not None and age <= stale_after_seconds() and detail.get("state") not in (None, "stopped")
    if beat is None:
        state = "never started"
    elif not up:
        state = f"not running (last: {detail.get('state', 'unknown')})"
    else:
        state = str(detail.get("state", "unknown"))
    now = lag()
    streams = {EVENTS: settings.BUS_EVENTS_STREAM, TELEMETRY: settings.BUS_TELEMETRY_STREAM}
    return BusStatus(
        enabled=bool(settings.NATS_URL),
        url=safe_url(settings.NATS_URL) if settings.NATS_URL else "",
        relay_state=state,
        relay_age_seconds=age,
        relay_up=up,
        last_error=str(detail.get("error", "")) if up else "",
        sources=[
            SourceStatus(
                name=source,
                stream=streams[source],
                position=int(now[f"{source}_position"]),
                published=int(now[f"{source}_published"]),
                lag_rows=int(now[f"{source}_lag_rows"]),
                lag_seconds=float(now[f"{source}_lag_seconds"]),
            )
            for source in (EVENTS, TELEMETRY)
        ],
        refused=BusRefusal.objects.count(),
    )


def refusals() -> QuerySet[BusRefusal]:
    return BusRefusal.objects.order_by("-created_at", "-id")
