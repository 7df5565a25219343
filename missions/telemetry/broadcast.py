"""Live-map updates from ingest: the ``fleet.positions`` message and how it reaches the channel layer."""

from __future__ import annotations

import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync

from missions.telemetry.normalize import TelemetryEvent
from tms_console import tracing

log = logging.getLogger(__name__)

FLEET_GROUP = "fleet"


def position_message(ev: TelemetryEvent, *, status: str, mode: str) -> dict[str, Any]:
    return {
        "mission_id": ev.mission_id,
        "vehicle_id": ev.vehicle_id,
        "lat": round(ev.lat, 6),
        "lon": round(ev.lon, 6),
        "speed_kph": None if ev.speed_kph is None else round(ev.speed_kph, 1),
        "heading_deg": ev.heading_deg,
        "autonomy_mode": ev.autonomy_mode or mode,
        "status": status,
        "safety_event": ev.safety_event,
        "last_seen_at": ev.ts_text,
    }


def fleet_broadcast(positions: list[dict[str, Any]]) -> None:
    """One message per batch to the live map group; never fails the caller.

    With a shared (Redis) channel layer the send is handed to this process's
    broadcaster thread, so a request or stream does not wait for it and does
    not build an event loop per call. The in-process layer's queues belong to
    the server's own loop, so there the send goes through ``async_to_sync``.
    """
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        if not layer.groups.get(FLEET_GROUP):
            # Nobody has the map open in this process: a send would reach no one, and
            # ``async_to_sync`` outside the server's loop starts a thread for each call.
            return
        try:
            async_to_sync(layer.group_send)(FLEET_GROUP, {"type": "fleet.positions", "positions": positions})
        except Exception:  # a live update must never break the write that caused it
            log.exception("fleet broadcast failed")
        return
    _broadcaster(layer).submit(positions)


class FleetBroadcaster:
    """A daemon thread with its own event loop that sends ``fleet.positions`` messages in order.

    Positions queued while a send is in flight go out together in the next
    message (newest position per mission wins), so a slow channel layer delays
    the map a little instead of piling up messages.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-broadcast", daemon=True)
        self._thread.start()

    def submit(self, positions: list[dict[str, Any]]) -> None:
        with self._lock:
            for position in positions:
                self._pending[position["mission_id"]] = position
        self._wake.set()

    def _run(self) -> None:
        with tracing.untraced():  # one broadcast carries many batches' positions: no trace of its own
            self._serve()

    def _serve(self) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = list(self._pending.values()), {}
            if not batch:
                continue
            try:
                loop.run_until_complete(
                    self.layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": batch})
                )
            except Exception:  # the next batch tries again; the map also resyncs on reconnect
                log.exception("fleet broadcast failed")


_broadcasters: dict[int, FleetBroadcaster] = {}
_broadcasters_lock = threading.Lock()


def _broadcaster(layer: Any) -> FleetBroadcaster:
    # One per layer object (per process, or per test that swaps the layer).
    with _broadcasters_lock:
        broadcaster = _broadcasters.get(id(layer))
        if broadcaster is None or broadcaster.layer is not layer:
            broadcaster = _broadcasters[id(layer)] = FleetBroadcaster(layer)
        return broadcaster
