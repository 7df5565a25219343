"""Websocket consumers of the telemetry pipeline: partner ingest stream and the dispatcher's live map.

``ws/ingest/`` (partners): OAuth2 bearer token with scope ``telemetry:write``
in the ``Authorization`` header or ``?access_token=``. Each message
``{"seq": n, "events": [...]}`` is answered ``{"ack": n, "accepted": k,
"duplicates": d, "rejected": [{"index", "reason"}]}`` once the batch is
committed, so a sender knows exactly what was stored and resends only the rest.
An event holding a string that cannot be stored (U+0000, a lone surrogate) is
rejected on its own; one outside the events refuses the message
(``{"ack": n, "error": ..., "pointer": "/..."}``).

``ws/map/`` (console): OTP-verified session with VIEW_CONSOLE. Sends the fleet
on connect, then a frame soon after positions arrive (``LIVEMAP_COALESCE_SECONDS``
gathers a burst), at most one per ``LIVEMAP_FRAME_SECONDS``, holding the
latest position of each vehicle that moved, with its ETA against
its delivery window (``map_eta``); all maps of a process share one
subscription, one frame and one set of estimates (``FleetFrames``). Planned
routes are not in the frames: the browser asks for the routes of the missions
it has not seen yet (``{"type": "routes", "mission_ids": [...]}``) and keeps
them, so each route crosses the socket once per page.

Close codes: 4401 unauthenticated or token expired, 4403 no permission / scope.

Vehicle identity (docs/identity.md): behind the edge, the client certificate of
the connection is the vehicle's X.509-SVID. A carrier that registered a trust
domain streams one vehicle per connection; each message is checked again (the
SVID may expire or its CA be retired while the socket is open). A refused
identity gets a last message ``{"ack": n, "error": ..., "problem": {RFC 9457
document with "reason"}}`` and the close code 4401 (no SVID) or 4403 (refused),
with the reason as the close reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.utils import timezone
from opentelemetry.trace import SpanKind

from missions.consumers import authorize
from missions.identity.gate import refusal_problem, scope_certificate, telemetry_identity
from missions.identity.svid import SvidRefused
from missions.models import Carrier
from missions.models.partner import PartnerClient, TokenCertificateBinding
from missions.telemetry.ingest import FLEET_GROUP, BatchTooLarge, MissionCache, ingest_events
from missions.telemetry.map_eta import FORGET_SECONDS, EtaTracker, MissionRoute
from missions.telemetry.map_state import fleet_changed_since, fleet_state, mission_map_detail, mission_routes
from tms_console import tracing
from tms_console.unstorable import json_parse, unstorable_find

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
TELEMETRY_SCOPE = "telemetry:write"
# Without a shared channel layer, batches stored by another process (the MQTT
# bridge, a second web process) only reach the map through this poll.
MAP_POLL_SECONDS = 1.0
POLL_OVERLAP_SECONDS = 3.0
RECEIVE_RETRY_SECONDS = 1.0
GROUP_RENEW_SECONDS = 3600.0
# The most routes one request of a map may ask for (a map asks for what it lacks, in one go after its snapshot).
ROUTES_PER_REQUEST = 10_000
# The largest message a map is sent: daphne (autobahn) refuses to send one over 1 MiB and ends the socket. A
# fleet's snapshot (10,000 trucks: 4.4 MB), a frame after a burst or the routes of thousands of missions go
# out in parts under this.
MESSAGE_BYTES = 768 * 1024


@dataclass(frozen=True)
class StreamPrincipal:
    carrier: Carrier
    client_id: str
    expires: datetime


def _bearer(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return str(token.strip())
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return str((query.get("access_token") or [""])[0].strip())


def stream_authenticate(token: str) -> StreamPrincipal | int:
    """The carrier behind a partner token, or the close code to refuse with."""
    from oauth2_provider.models import get_access_token_model

    if not token:
        return CLOSE_UNAUTHENTICATED
    checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
    access = (
        get_access_token_model()
        .objects.select_related("application__partner_client__carrier")
        .filter(token_checksum=checksum)
        .first()
    )
    if access is None or access.application is None or access.is_expired():
        return CLOSE_UNAUTHENTICATED
    if not access.allow_scopes([TELEMETRY_SCOPE]):
        return CLOSE_FORBIDDEN
    try:
        partner = access.application.partner_client
    except PartnerClient.DoesNotExist:
        return CLOSE_FORBIDDEN
    # Certificate-bound tokens (RFC 8705 §3) need the TLS client certificate, which
    # a websocket behind our proxy does not carry: such carriers (and any client whose
    # token was issued over a certificate) stream over MQTT or HTTP.
    if partner.carrier.require_mtls or TokenCertificateBinding.objects.filter(access_token=access).exists():
        return CLOSE_FORBIDDEN
    return StreamPrincipal(carrier=partner.carrier, client_id=access.application.client_id, expires=access.expires)


class TelemetryIngestConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A partner's telemetry stream: batches in, acknowledgements out."""

    principal: StreamPrincipal | None = None

    async def connect(self) -> None:
        # Accept first so the client receives our close code instead of a bare 1006.
        await self.accept()
        outcome = await database_sync_to_async(stream_authenticate)(_bearer(self.scope))
        if isinstance(outcome, int):
            await self.close(code=outcome)
            return
        self.certificate = None
        try:
            self.certificate = scope_certificate(self.scope, path="ws")
            await database_sync_to_async(telemetry_identity)(
                carrier_id=outcome.carrier.pk, certificate=self.certificate, events=[], path="ws"
            )
        except SvidRefused as refused:
            await self._refuse(None, refused)
            return
        self.principal = outcome
        self.cache = MissionCache()
        await self.send_json(
            {"type": "ready", "carrier": outcome.carrier.slug, "max_batch_events": settings.API_TELEMETRY_MAX_BATCH}
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.principal is None:
            return
        try:
            content = json_parse(text_data if text_data is not None else bytes_data or b"")
        except (ValueError, RecursionError):
            await self.send_json({"ack": None, "error": "message: not valid JSON"})
            return
        found = unstorable_find(content, per_item=("events",))
        if found is not None:
            # Outside the events (which are refused one by one), the whole message is refused.
            seq = content.get("seq") if isinstance(content, dict) else None
            ack = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
            await self.send_json({"ack": ack, "error": found.reason(), "pointer": found.pointer})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        principal = self.principal
        if principal is None:
            return
        if principal.expires <= timezone.now():
            await self.send_json({"ack": None, "error": "token: expired; reconnect with a new token"})
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        seq = content.get("seq") if isinstance(content, dict) else None
        if isinstance(seq, bool) or not isinstance(seq, int):
            await self.send_json({"ack": None, "error": "seq: expected an integer"})
            return
        events = content.get("events")
        if not isinstance(events, list):
            await self.send_json({"ack": seq, "error": "events: expected a list"})
            return
        try:
            identity = await database_sync_to_async(telemetry_identity)(
                carrier_id=principal.carrier.pk, certificate=self.certificate, events=events, path="ws"
            )
        except SvidRefused as refused:
            await self._refuse(seq, refused)
            return
        traceparent = content.get("traceparent")
        # One span per message (never per event or for the whole socket), continuing the sender's trace.
        span = tracing.span_from(
            "ws telemetry batch",
            traceparent if isinstance(traceparent, str) else None,
            kind=SpanKind.CONSUMER,
            carrier=principal.carrier.slug,
        )
        try:
            with span:
                result = await database_sync_to_async(ingest_events)(
                    carrier=principal.carrier,
                    events=events,
                    source="ws",
                    cache=self.cache,
                    vehicle_cert=identity.fingerprint if identity is not None else "",
                )
        except BatchTooLarge as exc:
            await self.send_json({"ack": seq, "error": f"events: {exc.message}"})
            return
        await self.send_json({"ack": seq, **result.as_dict()})

    async def _refuse(self, seq: int | None, refused: SvidRefused) -> None:
        """The vehicle identity is refused: say why, store nothing, close the stream."""
        self.principal = None
        _, problem = refusal_problem(refused, instance="/ws/ingest/")
        await self.send_json({"ack": seq, "error": f"vehicle identity: {refused.detail}", "problem": problem})
        code = CLOSE_UNAUTHENTICATED if refused.status == 401 else CLOSE_FORBIDDEN
        await self.close(code=code, reason=f"{refused.code}: {refused.reason}")


class LiveMapConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """The dispatcher's live map: the fleet on connect, then the process's shared position frames."""

    frames: FleetFrames | None = None
    # While above zero, a snapshot is on its way: frames wait in ``backlog`` so none arrives before it.
    holds = 0

    async def connect(self) -> None:

        self.backlog: dict[int, dict[str, Any]] = {}
        await self.accept()
        code = await database_sync_to_async(authorize)(self.scope)
        if code:
            await self.close(code=code)
            return
        # Subscribe before the snapshot is read, so a position committed in between is in one or the other.
        frames = FleetFrames.of(self.channel_layer)
        await frames.join(self)
        self.frames = frames
        await self._send_snapshot()
        await self._release()

    async def disconnect(self, code: int) -> None:
        if self.frames is not None:
            await self.frames.leave(self)
            self.frames = None

    async def _send_snapshot(self) -> None:
        assert self.frames is not None
        for text in await self.frames.snapshot():
            await self.send(text_data=text)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return orjson.dumps(content).decode()

    def hold(self) -> None:
        self.holds += 1

    async def _release(self) -> None:
        if self.holds > 1:
            self.holds -= 1
            return
        # The hold is kept while the backlog goes out (a large one in parts): a shared frame cannot
        # overtake it, and it reaches the map after the snapshot it follows.
        try:
            while self.backlog:
                batch, self.backlog = list(self.backlog.values()), {}
                for text in positions_parts(batch):
                    await self.send(text_data=text)
        finally:
            self.holds -= 1

    async def resync(self) -> None:
        """A fresh snapshot (the browser asked, or the process may have missed positions), then frames again."""
        if self.frames is None:
            return
        self.hold()
        try:
            await self._send_snapshot()
        finally:
            await self._release()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "refresh":
            await self.resync()
        elif kind == "detail":
            mission_id = content.get("mission_id")
            if _is_id(mission_id) and self.frames is not None:
                detail = await database_sync_to_async(mission_map_detail)(mission_id=mission_id)
                if detail is not None:
                    detail.update(self.frames.eta.latest(mission_id))
                await self.send_json({"type": "detail", "mission_id": mission_id, "mission": detail})
        elif kind == "routes":
            wanted = content.get("mission_ids")
            if isinstance(wanted, list) and self.frames is not None:
                ids = sorted({i for i in wanted[:ROUTES_PER_REQUEST] if _is_id(i)})
                routes = await self.frames.routes_wire(ids)
                for text in encoded_parts({"type": "routes"}, "routes", routes):
                    await self.send(text_data=text)


def _is_id(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def positions_parts(batch: list[dict[str, Any]]) -> list[str]:
    return encoded_parts({"type": "positions"}, "vehicles", batch)


def encoded_parts(
    head: dict[str, Any], key: str, rows: list[Any], rest: dict[str, Any] | None = None, limit: int = 0
) -> list[str]:
    """``{**head, key: rows}`` as JSON text, in as many messages of at most ``MESSAGE_BYTES`` as it takes.

    The rows are halved until each part fits; parts after the first carry ``rest`` instead of ``head``.
    """
    limit = limit or MESSAGE_BYTES
    data = orjson.dumps({**head, key: rows})
    if len(data) <= limit or len(rows) <= 1:
        return [data.decode()]
    half = len(rows) // 2
    tail = rest if rest is not None else head
    return encoded_parts(head, key, rows[:half], tail, limit) + encoded_parts(tail, key, rows[half:], tail, limit)


def coalesce(into: dict[int, dict[str, Any]], positions: Iterable[dict[str, Any]]) -> None:
    """Keep only the newest position of each mission (ISO 8601 UTC strings of one format compare in time order)."""
    for position in positions:
        current = into.get(position["mission_id"])
        if current is None or (position["last_seen_at"] or "") >= (current["last_seen_at"] or ""):
            into[position["mission_id"]] = position


class FleetFrames:
    """The live maps of one process share one subscription to the fleet group and one frame clock.

    Every dashboard is sent the same positions, so instead of each socket joining the group (with
    channels_redis each then dispatches every batch through its own handler, and channels runs each
    dispatch behind a hop to the sync thread that ingest keeps busy), the process receives each batch
    once, coalesces it once, and encodes each frame once for all its maps.

    Frames follow changes, not a clock: the first position after a frame is sent
    ``LIVEMAP_COALESCE_SECONDS`` after it arrived (what else arrives meanwhile rides along), but never
    sooner than ``LIVEMAP_FRAME_SECONDS`` after the previous frame, a cap on frames per second so a
    busy fleet does not flood the browsers. The same frame goes to every socket.

    One instance per event loop and channel layer; it subscribes with the first map and unsubscribes
    with the last. Without a shared channel layer it also polls the database, once for all maps.
    """

    _instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, FleetFrames]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.maps: dict[LiveMapConsumer, None] = {}  # insertion-ordered set
        self.pending: dict[int, dict[str, Any]] = {}
        self.lock = asyncio.Lock()
        self.channel = ""
        self.tasks: list[asyncio.Task[None]] = []
        self.frame_task: asyncio.Task[None] | None = None
        self.last_frame_at = -math.inf
        self.pending_since = -math.inf  # when the first position of ``pending`` arrived (loop time)
        self.snapshot_reading: asyncio.Future[list[str]] | None = None
        self.snapshot_next: asyncio.Future[list[str]] | None = None
        # Planned routes and recent speeds of the trucks on the maps: the ETA of every position.
        self.eta = EtaTracker()
        self.routes_wanted: set[int] = set()
        self.routes_task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, layer: Any) -> FleetFrames:
        per_loop = cls._instances.setdefault(asyncio.get_running_loop(), {})
        frames = per_loop.get(id(layer))
        if frames is None or frames.layer is not layer:
            frames = per_loop[id(layer)] = cls(layer)
        return frames

    async def join(self, live_map: LiveMapConsumer) -> None:
        """Add a map; it receives no frame until it releases its first hold (after its snapshot)."""
        async with self.lock:
            if not self.maps:
                await self._subscribe()
            live_map.hold()
            self.maps[live_map] = None

    async def leave(self, live_map: LiveMapConsumer) -> None:
        async with self.lock:
            if live_map not in self.maps:
                return
            del self.maps[live_map]
            if self.maps:
                return
            for task in (*self.tasks, self.frame_task, self.routes_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self.tasks, self.frame_task, self.routes_task, self.pending = [], None, None, {}
            self.routes_wanted = set()
            with contextlib.suppress(Exception):  # the membership expires on its own if Redis is gone
                await self.layer.group_discard(FLEET_GROUP, self.channel)

    async def _subscribe(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(FLEET_GROUP, self.channel)
        self.tasks = [asyncio.create_task(self._receive_loop()), asyncio.create_task(self._renew_loop())]
        if isinstance(self.layer, InMemoryChannelLayer):
            self.tasks.append(asyncio.create_task(self._poll_loop()))

    async def snapshot(self) -> list[str]:
        """The fleet, encoded, from a read that started after this call (a large fleet in parts:
        ``snapshot``, then ``snapshot_more`` messages that add to it).

        Maps that ask at the same moment (every browser reconnects when a web process restarts) share
        one read and one encoding instead of queueing one each on the sync thread that ingest uses.
        """
        if self.snapshot_next is None:
            self.snapshot_next = asyncio.ensure_future(self._read_snapshot(after=self.snapshot_reading))
        # Shielded: a map that disconnects meanwhile does not cancel the read the others wait for.
        return await asyncio.shield(self.snapshot_next)

    async def _read_snapshot(self, after: asyncio.Future[list[str]] | None) -> list[str]:
        if after is not None:  # one read at a time; this one starts when the previous ends
            with contextlib.suppress(Exception):
                await asyncio.shield(after)
        # From here on this read may have begun: later callers wait for the next one.
        self.snapshot_reading, self.snapshot_next = self.snapshot_next, None
        now = timezone.now()
        vehicles = await database_sync_to_async(fleet_state)(now=now)
        missing = [row["mission_id"] for row in vehicles if row["mission_id"] not in self.eta.routes]
        if missing:
            self.eta.routes_add(await _routes_read(mission_ids=missing, now=now, lines=True))
        margin_s = at_risk_margin_seconds()
        for row in vehicles:
            self.eta.observe(row, margin_s=margin_s)
        self.eta.forget_before(now.timestamp() - FORGET_SECONDS, keep=[row["mission_id"] for row in vehicles])
        head = {"type": "snapshot", "server_time": now.isoformat(), "frame_seconds": settings.LIVEMAP_FRAME_SECONDS}
        return encoded_parts(head, "vehicles", vehicles, rest={"type": "snapshot_more"})

    def add(self, positions: Iterable[dict[str, Any]]) -> None:
        positions = list(positions)
        margin_s = at_risk_margin_seconds()
        unrouted = [p["mission_id"] for p in positions if not self.eta.observe(p, margin_s=margin_s)]
        if unrouted:
            self._routes_want(unrouted)
        if positions and not self.pending:
            self.pending_since = asyncio.get_running_loop().time()
        coalesce(self.pending, positions)
        if self.pending and self.frame_task is None:
            self.frame_task = asyncio.create_task(self._frame_after(self.frame_delay()))

    def frame_delay(self) -> float:
        """Seconds from now to the next frame: the coalescing delay, stretched to the minimum spacing."""
        due = max(self.pending_since + coalesce_seconds(), self.last_frame_at + frame_seconds())
        return max(0.0, due - asyncio.get_running_loop().time())

    def _routes_want(self, mission_ids: Iterable[int]) -> None:
        """Read the routes of missions first seen in a frame, in the background: frames never wait for it."""
        self.routes_wanted.update(mission_ids)
        if self.routes_task is None:
            self.routes_task = asyncio.create_task(self._routes_load())

    async def _routes_load(self) -> None:
        try:
            while self.routes_wanted:
                ids, self.routes_wanted = sorted(self.routes_wanted), set()
                read = await _routes_read(mission_ids=ids, lines=True)
                self.eta.routes_add(read)
                # Their latest reports went out without an estimate: again, with it (a truck may not report again).
                # Only those whose route was read: another (a mission gone meanwhile) would be asked for again at once.
                again = [p for p in (self.eta.latest_position(r.mission_id) for r in read) if p is not None]
                if again:
                    self.add(again)
        except Exception:  # the next position of those trucks asks again
            log.warning("live map: routes not read", exc_info=True)
        finally:
            self.routes_task = None

    async def routes_wire(self, mission_ids: list[int]) -> list[dict[str, Any]]:
        """What a map is sent of each mission once: its planned route, lane and delivery window."""
        known = self.eta.routes
        missing = [i for i in mission_ids if i not in known]
        read: dict[int, MissionRoute] = {}
        if missing:
            read = {r.mission_id: r for r in await _routes_read(mission_ids=missing)}
        # Kept for the ETA only when the truck is on the map; any other mission a map asks for is not remembered.
        self.eta.routes_add(r for i, r in read.items() if self.eta.tracking(i))
        out = []
        for mission_id in mission_ids:
            route = known.get(mission_id) or read.get(mission_id)
            if route is not None:
                out.append(route.wire)
        return out

    async def _frame_after(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self.last_frame_at = asyncio.get_running_loop().time()
            batch, self.pending = list(self.pending.values()), {}
            await self._send(batch)
        finally:
            self.frame_task = None
        if self.pending:  # positions that arrived while the frame was being written
            self.add(())

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        texts = positions_parts(batch)
        for live_map in list(self.maps):
            if live_map.holds:
                coalesce(live_map.backlog, batch)
                continue
            try:
                for text in texts:
                    await live_map.send(text_data=text)
            except Exception:  # that socket closed under us; its disconnect handler leaves
                log.debug("live map frame not sent", exc_info=True)

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis went away: keep the sockets, subscribe again, and resend each map a snapshot
                # once it is back, since positions were lost in between.
                log.warning("live map: fleet group receive failed, retrying", exc_info=True)
                await asyncio.sleep(RECEIVE_RETRY_SECONDS)
                with contextlib.suppress(Exception):
                    await self.layer.group_add(FLEET_GROUP, self.channel)
                    self.tasks.append(asyncio.create_task(self._resync_all()))
                continue
            if message.get("type") == "fleet.positions":
                self.add(message.get("positions", ()))

    async def _renew_loop(self) -> None:
        # Channel layers drop a group member after group_expiry (a day) whether or not messages flow.
        while True:
            await asyncio.sleep(GROUP_RENEW_SECONDS)
            try:
                await self.layer.group_add(FLEET_GROUP, self.channel)
            except Exception:
                log.warning("live map: fleet group membership not renewed", exc_info=True)

    async def _resync_all(self) -> None:
        await asyncio.gather(*(live_map.resync() for live_map in list(self.maps)), return_exceptions=True)

    async def _poll_loop(self) -> None:
        """Without Redis, positions ingested by another process are read from the database."""
        polled_until = timezone.now()
        while True:
            await asyncio.sleep(MAP_POLL_SECONDS)
            # Overlap: a transaction that committed just after our last poll may carry an earlier updated_at.
            since, now = polled_until - timedelta(seconds=POLL_OVERLAP_SECONDS), timezone.now()
            try:
                rows = await database_sync_to_async(fleet_changed_since)(since=since, now=now)
            except Exception:
                log.warning("live map poll failed", exc_info=True)
                continue
            polled_until = now
            self.add(rows)


def frame_seconds() -> float:
    """The least time between two frames (a cap of 20 a second whatever the setting)."""
    return max(0.05, float(settings.LIVEMAP_FRAME_SECONDS))


def coalesce_seconds() -> float:
    """How long a frame waits after the first position it carries, to gather what arrives with it."""
    return min(1.0, max(0.0, float(settings.LIVEMAP_COALESCE_SECONDS)))


def at_risk_margin_seconds() -> float:
    return max(0.0, float(settings.LIVEMAP_AT_RISK_MARGIN_MINUTES) * 60.0)


# Routes are read on a thread of their own, not on the one sync thread that ingest's batches wait for: the
# first map of a process reads a route per truck (1,000 routes: a few hundred ms).
_routes_read = database_sync_to_async(mission_routes, thread_sensitive=False)
