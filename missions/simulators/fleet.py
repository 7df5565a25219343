"""Fleet simulator: trucks driving real interstate corridors between US freight hubs, sending telemetry.

Each simulated vehicle belongs to an active mission in the database and
drives the mission's planned route (``missions.routes``: a stretch of an
interstate corridor, or the great circle where no known corridor serves the
lane), so it stays on the line the live map draws. Speeds are plausible for a loaded tractor-trailer (cruise
88-105 km/h, slower through towns, occasional stops), positions are
interpolated along the waypoints by great-circle distance.

Transports (all authenticated like a real carrier):
  http  OAuth2 client credentials, ``POST /api/v1/telemetry/batch`` with an Idempotency-Key
  ws    the same bearer token, ``ws/ingest/`` with ``{"seq", "events"}`` and acknowledgements
  mqtt  ``<prefix>/<carrier_slug>/<vehicle_id>`` with the broker credentials (MQTT_USERNAME / MQTT_PASSWORD)

Faults (``--fault KIND:VEHICLE[@SECONDS]``, vehicle by external id or index):
  comms_loss  the vehicle stops sending        degrade    critical sensors fail, ECU errors
  supervised  drop to supervised autonomy       estop      emergency stop, then safe hold at 0 km/h
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from missions.routes import CORRIDORS, GREAT_CIRCLE_BASIS, Polyline, route_plan
from missions.telemetry.mqtt_config import broker_config
from missions.telemetry.normalize import ts_format
from tms_console import tracing

log = logging.getLogger(__name__)

LatLon = tuple[float, float]

CRUISE_KPH = (88.0, 105.0)
TOWN_KPH = 65.0
TOWN_RADIUS_KM = 4.0


class Route:
    """The polyline a simulated truck drives, with the towns along it where it slows down."""

    def __init__(self, name: str, points: list[LatLon] | tuple[LatLon, ...], *, towns_at_points: bool = True) -> None:
        self.name = name
        self.line = Polyline(points)
        self.points, self.cum_km, self.length_km = self.line.points, self.line.cum_km, self.line.length_km
        # A corridor's waypoints are towns and interchanges; a great-circle line's points are not.
        self.towns_km = list(self.cum_km) if towns_at_points else [0.0, self.length_km]

    def at(self, km: float) -> tuple[float, float, float]:
        """(lat, lon, heading_deg) at ``km`` from the start."""
        km = min(max(km, 0.0), self.length_km)
        i = min(max(bisect.bisect_right(self.cum_km, km) - 1, 0), len(self.points) - 2)
        lat, lon = self.line.at(km)
        (lat1, lon1), (lat2, lon2) = self.points[i], self.points[i + 1]
        return lat, lon, bearing(lat1, lon1, lat2, lon2)

    def near_town(self, km: float) -> bool:
        return any(abs(km - c) < TOWN_RADIUS_KM for c in self.towns_km)


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(y, x)) + 360.0) % 360.0


ROUTE_OBJECTS = {corridor.name: Route(corridor.name, corridor.points) for corridor in CORRIDORS}


def mission_route(mission: Any) -> Route:
    """The route a mission's truck drives: its planned route (stored at assignment, else planned now)."""
    points = [tuple(p) for p in mission.planned_route or ()]
    basis = mission.planned_route_basis
    if len(points) < 2:
        shipment = mission.shipment
        planned = route_plan(
            (shipment.origin_lat, shipment.origin_lon), (shipment.destination_lat, shipment.destination_lon)
        )
        points, basis = list(planned.points), planned.basis
    return Route(basis or "planned route", points, towns_at_points=basis != GREAT_CIRCLE_BASIS)


@dataclass
class Fault:
    kind: str
    vehicle: str
    at_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        kind, _, rest = text.partition(":")
        vehicle, _, at = rest.partition("@")
        if kind not in ("comms_loss", "degrade", "supervised", "estop") or not vehicle:
            raise ValueError(f"fault {text!r}: use comms_loss|degrade|supervised|estop:VEHICLE[@SECONDS]")
        return cls(kind=kind, vehicle=vehicle, at_s=float(at or 0))


@dataclass
class SimVehicle:
    """One truck: its mission, where it is on its corridor and what faults it has."""

    mission_id: int
    vehicle_id: str
    carrier_slug: str
    correlation_id: str
    route: Route
    reverse: bool
    km: float
    rng: random.Random
    speed_kph: float = 0.0
    target_kph: float = 95.0
    stopped_for_s: float = 0.0
    fuel_pct: float = 80.0
    mode: str = "autonomous"
    faults: set[str] = field(default_factory=set)
    estop_sent: bool = False

    def step(self, dt: float) -> None:
        if "estop" in self.faults:
            self.speed_kph = 0.0
            return
        if self.stopped_for_s > 0:
            self.stopped_for_s -= dt
            self.speed_kph = max(0.0, self.speed_kph - 12.0 * dt)
        else:
            if self.rng.random() < dt / 1800:  # about one stop per half hour of driving
                self.stopped_for_s = self.rng.uniform(20, 90)
            if self.rng.random() < dt / 60:
                self.target_kph = self.rng.uniform(*CRUISE_KPH)
            target = TOWN_KPH if self.route.near_town(self.km_along()) else self.target_kph
            if "degrade" in self.faults or self.mode == "supervised":
                target = min(target, 70.0)
            # A truck accelerates slowly and brakes faster: about 1 and 2.5 km/h per second.
            delta = target - self.speed_kph
            self.speed_kph += max(-2.5 * dt, min(1.0 * dt, delta))
            self.speed_kph = min(max(self.speed_kph, 0.0), 105.0)
        self.km += self.speed_kph * dt / 3600.0
        if self.km >= self.route.length_km:  # delivered: head back along the corridor
            self.km = 0.0
            self.reverse = not self.reverse
        self.fuel_pct = max(5.0, self.fuel_pct - self.speed_kph * dt / 3600.0 * 0.035)

    def km_along(self) -> float:
        return self.route.length_km - self.km if self.reverse else self.km

    def event(self, now: datetime) -> dict[str, Any]:
        lat, lon, heading = self.route.at(self.km_along())
        if self.reverse:
            heading = (heading + 180.0) % 360.0
        safety = None
        if "estop" in self.faults and not self.estop_sent:
            safety, self.estop_sent = "emergency_stop", True
        mode = "safe_hold" if "estop" in self.faults else ("supervised" if "supervised" in self.faults else self.mode)
        degraded = "degrade" in self.faults
        return {
            "schema_version": "1",
            "event_id": str(uuid.uuid4()),
            "mission_id": self.mission_id,
            "vehicle_id": self.vehicle_id,
            "correlation_id": self.correlation_id,
            "ts": ts_format(now),
            "position": {
                "lat": round(lat + self.rng.gauss(0, 0.00002), 6),
                "lon": round(lon + self.rng.gauss(0, 0.00002), 6),
                "speed_kph": round(self.speed_kph, 1),
                "heading_deg": round(heading, 1),
                "accuracy_m": round(self.rng.uniform(1.5, 4.0), 1),
            },
            "mission_state": "en_route",
            "health": {
                "fuel_pct": round(self.fuel_pct, 1),
                "critical_sensors_ok": not degraded,
                "ecu_errors": ["U0100", "C0561"] if degraded else [],
                "thermal_warning": False,
            },
            "connectivity": {
                "uplink": self.rng.choices(["5g", "4g", "satellite"], weights=[70, 25, 5])[0],
                "packet_loss_pct": round(abs(self.rng.gauss(0.3, 0.4)), 2),
                "latency_ms": round(self.rng.uniform(25, 120), 0),
            },
            "safety_event": safety,
            "autonomy_mode": mode,
        }


class Transport(Protocol):
    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]: ...

    def close(self) -> None: ...


@dataclass
class Credentials:
    client_id: str
    client_secret: str


class TokenSource:
    """OAuth2 client credentials (RFC 6749 §4.4) against the console's token endpoint, cached until expiry."""

    def __init__(self, base_url: str, creds: Credentials, http: Any) -> None:
        self.base_url, self.creds, self.http = base_url.rstrip("/"), creds, http
        self._token, self._expires = "", 0.0

    def get(self) -> str:
        if not self._token or time.monotonic() > self._expires - 30:
            response = self.http.post(
                f"{self.base_url}/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "telemetry:write"},
                auth=(self.creds.client_id, self.creds.client_secret),
            )
            response.raise_for_status()
            body = response.json()
            self._token = body["access_token"]
            self._expires = time.monotonic() + float(body.get("expires_in", 300))
        return self._token

    def invalidate(self) -> None:
        self._token = ""


CredentialsFor = Callable[[str], Credentials]


class _TokenTransport:
    """Bearer tokens per carrier; a carrier seen for the first time gets credentials from ``credentials_for``."""

    def __init__(
        self, base_url: str, credentials: dict[str, Credentials], credentials_for: CredentialsFor | None
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(timeout=10.0)
        self.credentials_for = credentials_for
        self.tokens = {slug: TokenSource(base_url, c, self.http) for slug, c in credentials.items()}

    def token_source(self, slug: str) -> TokenSource:
        if slug not in self.tokens:
            if self.credentials_for is None:
                raise KeyError(f"no credentials for carrier {slug!r}")
            self.tokens[slug] = TokenSource(self.base_url, self.credentials_for(slug), self.http)
        return self.tokens[slug]


class HttpTransport(_TokenTransport):
    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]:
        tokens = self.token_source(carrier_slug)
        key = str(uuid.uuid4())  # one key per batch: a retry of this batch is answered from the record
        for _ in range(2):
            response = self.http.post(
                f"{self.base_url}/api/v1/telemetry/batch",
                json={"events": events},
                headers={"Authorization": f"Bearer {tokens.get()}", "Idempotency-Key": key},
            )
            if response.status_code == 401:
                tokens.invalidate()
                continue
            if response.status_code >= 400:
                log.warning(
                    "telemetry batch refused", extra={"status": response.status_code, "body": response.text[:300]}
                )
                return {"accepted": 0, "rejected": len(events)}
            body = response.json()
            return {"accepted": int(body.get("accepted", 0)), "rejected": len(body.get("rejected", []))}
        return {"accepted": 0, "rejected": len(events)}

    def close(self) -> None:
        self.http.close()


class WsTransport(_TokenTransport):
    def __init__(
        self, base_url: str, credentials: dict[str, Credentials], credentials_for: CredentialsFor | None
    ) -> None:
        super().__init__(base_url, credentials, credentials_for)
        self.sockets: dict[str, Any] = {}
        self.seq = 0

    def _socket(self, slug: str) -> Any:
        from websockets.sync.client import connect
        from websockets.typing import Origin

        sock = self.sockets.get(slug)
        if sock is None:
            ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws/ingest/"
            sock = connect(
                ws_url,
                origin=Origin(self.base_url),  # the console checks Origin against ALLOWED_HOSTS
                additional_headers={"Authorization": f"Bearer {self.token_source(slug).get()}"},
                open_timeout=10,
                legacy=True,  # the connection itself, kept across ticks and closed by ``close``
            )
            json.loads(sock.recv(timeout=10))  # {"type": "ready", ...}
            self.sockets[slug] = sock
        return sock

    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]:
        self.seq += 1
        try:
            sock = self._socket(carrier_slug)
            frame: dict[str, Any] = {"seq": self.seq, "events": events}
            traceparent = tracing.current_traceparent()
            if traceparent:
                frame["traceparent"] = traceparent
            sock.send(json.dumps(frame))
            ack = json.loads(sock.recv(timeout=30))
        except Exception as exc:  # reconnect (with a fresh token) on the next tick
            log.warning("ws ingest send failed", extra={"error": str(exc)})
            self.token_source(carrier_slug).invalidate()
            stale = self.sockets.pop(carrier_slug, None)
            if stale is not None:
                stale.close()
            return {"accepted": 0, "rejected": len(events)}
        return {"accepted": int(ack.get("accepted", 0)), "rejected": len(ack.get("rejected", []))}

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.http.close()


class MqttTransport:
    def __init__(self, url: str, *, username: str, password: str, ca_file: str, topic_prefix: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        config = broker_config(url, username=username, password=password, ca_file=ca_file)
        self.prefix = topic_prefix.strip("/")
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"tms-fleet-sim-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password or None)
        if config.tls:
            self.client.tls_set(ca_certs=config.ca_file or None)
        self.client.connect(config.host, config.port, keepalive=30)
        self.client.loop_start()
        self.sent: list[Any] = []  # paho's MQTTMessageInfo of publishes the broker has not acknowledged yet

    def send(self, carrier_slug: str, events: list[dict[str, Any]]) -> dict[str, int]:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.sent = [info for info in self.sent if not info.is_published()]
        properties = None
        traceparent = tracing.current_traceparent()
        if traceparent:  # MQTT 5 user property: the bridge links its batch to this send
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [("traceparent", traceparent)]
        for event in events:
            topic = f"{self.prefix}/{carrier_slug}/{event['vehicle_id']}"
            self.sent.append(self.client.publish(topic, json.dumps(event), qos=1, properties=properties))
        return {"accepted": len(events), "rejected": 0}  # the bridge acknowledges to the broker, not to us

    def close(self, timeout_s: float = 3.0) -> None:
        """Wait (up to ``timeout_s``) for the broker to acknowledge what was published, then disconnect."""
        deadline = time.monotonic() + timeout_s
        for info in self.sent:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(RuntimeError, ValueError):  # not queued: nothing to wait for
                info.wait_for_publish(timeout=left)
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class FleetSimulator:
    vehicles: list[SimVehicle]
    transport: Transport
    rate_hz: float = 1.0
    faults: list[Fault] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"sent": 0, "accepted": 0, "rejected": 0, "ticks": 0})
    # Re-reads the active missions: new ones join the road, finished ones leave it. None: it could not
    # read them (the database away for a moment), and the trucks on the road keep driving.
    missions_refresh: Callable[[], list[Any] | None] | None = None
    refresh_every_s: float = 10.0
    seed: int = 7

    def sync(self, missions: list[Any]) -> None:
        """Keep the trucks still on an active mission (with their state), add trucks for new missions."""
        current = {v.mission_id: v for v in self.vehicles}
        active = {m.pk for m in missions}
        kept = [v for v in self.vehicles if v.mission_id in active]
        added = vehicles_from_missions([m for m in missions if m.pk not in current], seed=self.seed)
        self.vehicles = kept + added

    def _apply_faults(self, elapsed_s: float) -> None:
        for fault in self.faults:
            if elapsed_s < fault.at_s:
                continue
            for index, vehicle in enumerate(self.vehicles):
                if fault.vehicle in (vehicle.vehicle_id, str(index)):
                    vehicle.faults.add(fault.kind)

    def tick(self, elapsed_s: float, dt: float) -> None:
        self._apply_faults(elapsed_s)
        now = datetime.now(UTC)
        by_carrier: dict[str, list[dict[str, Any]]] = {}
        for vehicle in self.vehicles:
            vehicle.step(dt)
            if "comms_loss" in vehicle.faults:
                continue
            by_carrier.setdefault(vehicle.carrier_slug, []).append(vehicle.event(now))
        for slug, events in by_carrier.items():
            for start in range(0, len(events), 1000):
                chunk = events[start : start + 1000]
                # One span per send (HTTP batch, WebSocket frame or MQTT burst): the console links to it.
                with tracing.span_from("fleet-sim send", kind=SpanKind.PRODUCER, carrier=slug):
                    outcome = self.transport.send(slug, chunk)
                self.stats["sent"] += len(chunk)
                self.stats["accepted"] += outcome["accepted"]
                self.stats["rejected"] += outcome["rejected"]
        self.stats["ticks"] += 1

    def run(
        self,
        duration_s: float,
        *,
        on_tick: Callable[[dict[str, int]], None] | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, int]:
        """Tick at ``rate_hz`` for ``duration_s`` (0: until ``stop`` is set); a tick in progress is finished."""
        stop = stop or threading.Event()
        period = 1.0 / self.rate_hz
        started = time.monotonic()
        next_at = started
        last_refresh = started
        while (duration_s <= 0 or time.monotonic() - started < duration_s) and not stop.is_set():
            if self.missions_refresh is not None and time.monotonic() - last_refresh >= self.refresh_every_s:
                missions = self.missions_refresh()
                if missions is not None:
                    self.sync(missions)
                last_refresh = time.monotonic()
            self.tick(time.monotonic() - started, period)
            if on_tick is not None:
                on_tick(self.stats)
            next_at += period
            # Running late (a slow server): skip the missed ticks instead of bursting to catch up.
            next_at = max(next_at, time.monotonic())
            stop.wait(max(0.0, next_at - time.monotonic()))
        return self.stats


def vehicles_from_missions(missions: list[Any], *, seed: int = 7) -> list[SimVehicle]:
    """One simulated truck per mission (with a vehicle), somewhere along the mission's planned route."""
    out = []
    for mission in missions:
        route = mission_route(mission)
        rng = random.Random(seed * 100_003 + mission.pk)
        out.append(
            SimVehicle(
                mission_id=mission.pk,
                vehicle_id=mission.vehicle.external_id,
                carrier_slug=mission.carrier.slug,
                correlation_id=str(mission.correlation_id),
                route=route,
                reverse=False,
                km=rng.uniform(0, route.length_km * 0.8),
                rng=rng,
                speed_kph=rng.uniform(60, 95),
                fuel_pct=rng.uniform(40, 95),
                mode=mission.autonomy_mode or "autonomous",
            )
        )
    return out
