"""Websocket consumers of the telemetry pipeline: partner ingest stream and the dispatcher's live map.

``ws/ingest/`` (partners): OAuth2 bearer token with scope ``telemetry:write``
in the ``Authorization`` header or ``?access_token=``. Each message
``{"seq": n, "events": [...]}`` is answered ``{"ack": n, "accepted": k,
"duplicates": d, "rejected": [{"index", "reason"}]}`` once the batch is
committed, so a sender knows exactly what was stored and resends only the rest.

``ws/map/`` (console): OTP-verified session with VIEW_CONSOLE. Sends the fleet
on connect, then at most one coalesced frame per ``LIVEMAP_FRAME_SECONDS``
holding the latest position of each vehicle that moved.

Close codes: 4401 unauthenticated or token expired, 4403 no permission / scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from missions.models import Carrier
from missions.telemetry.ingest import FLEET_GROUP, BatchTooLarge, MissionCache, ingest_events
from missions.telemetry.map_state import fleet_changed_since, fleet_state, mission_map_detail

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
TELEMETRY_SCOPE = "telemetry:write"
# Without a shared channel layer, batches stored by another process (the MQTT
# bridge, a second web process) only reach the map through this poll.
MAP_POLL_SECONDS = 1.0
# How long an idle map waits after a first position to gather the rest of its burst.
FRAME_SETTLE_SECONDS = 0.02
POLL_OVERLAP_SECONDS = 3.0


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

    from missions.models.partner import PartnerClient

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
    # Certificate-bound tokens (RFC 8705) need the TLS client certificate, which
    # a websocket behind our proxy does not carry: such carriers stream over MQTT or HTTP.
    if partner.carrier.require_mtls:
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
        self.principal = outcome
        self.cache = MissionCache()
        await self.send_json(
            {"type": "ready", "carrier": outcome.carrier.slug, "max_batch_events": settings.API_TELEMETRY_MAX_BATCH}
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.principal is None:
            return
        try:
            content = json.loads(text_data if text_data is not None else (bytes_data or b"").decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            await self.send_json({"ack": None, "error": "message: not valid JSON"})
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
            result = await database_sync_to_async(ingest_events)(
                carrier=principal.carrier, events=events, source="ws", cache=self.cache
            )
        except BatchTooLarge as exc:
            await self.send_json({"ack": seq, "error": f"events: {exc.message}"})
            return
        await self.send_json({"ack": seq, **result.as_dict()})


class LiveMapConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """The dispatcher's live map: the fleet on connect, then coalesced position frames."""

    joined = False

    async def connect(self) -> None:
        from missions.consumers import authorize  # the console's rule: OTP-verified session + VIEW_CONSOLE

        self.pending: dict[int, dict[str, Any]] = {}
        self.flusher: asyncio.Task[None] | None = None
        self.frame_task: asyncio.Task[None] | None = None
        self.last_frame_at = 0.0
        await self.accept()
        code = await database_sync_to_async(authorize)(self.scope)
        if code:
            await self.close(code=code)
            return
        await self.channel_layer.group_add(FLEET_GROUP, self.channel_name)
        self.joined = True
        await self._send_snapshot()
        if _layer_is_in_process():
            self.flusher = asyncio.create_task(self._poll_loop())

    async def disconnect(self, code: int) -> None:
        for task in (self.flusher, getattr(self, "frame_task", None)):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.joined:
            await self.channel_layer.group_discard(FLEET_GROUP, self.channel_name)

    async def _send_snapshot(self) -> None:
        now = timezone.now()
        self.polled_until = now
        vehicles = await database_sync_to_async(fleet_state)(now=now)
        await self.send_json(
            {
                "type": "snapshot",
                "server_time": now.isoformat(),
                "frame_seconds": settings.LIVEMAP_FRAME_SECONDS,
                "vehicles": vehicles,
            }
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "refresh":
            await self._send_snapshot()
        elif kind == "detail":
            mission_id = content.get("mission_id")
            if isinstance(mission_id, int) and not isinstance(mission_id, bool):
                detail = await database_sync_to_async(mission_map_detail)(mission_id=mission_id)
                await self.send_json({"type": "detail", "mission_id": mission_id, "mission": detail})

    async def fleet_positions(self, message: dict[str, Any]) -> None:
        # Coalesce: only the newest position of each vehicle waits for the next frame.
        for position in message.get("positions", []):
            current = self.pending.get(position["mission_id"])
            if current is None or position["last_seen_at"] >= current["last_seen_at"]:
                self.pending[position["mission_id"]] = position
        if self.pending and self.frame_task is None:
            # An idle map sends soon (after a short settle that gathers a burst); a busy one
            # no more often than one frame per LIVEMAP_FRAME_SECONDS.
            loop = asyncio.get_running_loop()
            delay = max(FRAME_SETTLE_SECONDS, self.last_frame_at + self._frame_seconds() - loop.time())
            self.frame_task = asyncio.create_task(self._frame_after(delay))

    @staticmethod
    def _frame_seconds() -> float:
        return max(0.05, float(settings.LIVEMAP_FRAME_SECONDS))

    async def _frame_after(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            if self.pending:
                batch, self.pending = list(self.pending.values()), {}
                self.last_frame_at = asyncio.get_running_loop().time()
                await self.send_json({"type": "positions", "vehicles": batch})
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket closed under us; the disconnect handler cleans up
            log.debug("live map frame not sent", exc_info=True)
            return
        finally:
            self.frame_task = None
        if self.pending:  # positions that arrived while the frame was being sent
            await self.fleet_positions({"positions": []})

    async def _poll_loop(self) -> None:
        """Without Redis, positions ingested by another process are read from the database."""
        try:
            while True:
                await asyncio.sleep(MAP_POLL_SECONDS)
                await self._poll()
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket closed under us; the disconnect handler cleans up
            log.debug("live map poll loop ended", exc_info=True)

    async def _poll(self) -> None:
        # Overlap: a transaction that committed just after our last poll may carry an earlier updated_at.
        since, now = self.polled_until - timedelta(seconds=POLL_OVERLAP_SECONDS), timezone.now()
        rows = await database_sync_to_async(fleet_changed_since)(since=since, now=now)
        self.polled_until = now
        await self.fleet_positions({"positions": rows})


def _layer_is_in_process() -> bool:
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    return backend.endswith("InMemoryChannelLayer")
