"""Websocket consumers: authenticate, join the page's groups, replay what was missed, relay.

``ws/timeline/<kind>/<id>/?after=<event id>``: the session user must have
signed in with a one-time code in this session and hold VIEW_CONSOLE.
Close codes: 4401 not signed in / not OTP-verified, 4403 no permission,
4404 no such shipment, mission or incident.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device
from opentelemetry.trace import SpanKind

from missions import live
from tms_console import tracing
from tms_console.roles import VIEW_CONSOLE, perm

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
# Ids already sent on this socket: an event can reach us twice (replay and
# live, or two groups of the same page), the page must show it once.
_SENT_MEMORY = 2000


def authorize(scope: dict[str, Any]) -> int:
    """0 when the socket may follow console timelines, else the close code to use."""
    user = scope.get("user")
    if user is None or not user.is_authenticated or not user.is_active:
        return CLOSE_UNAUTHENTICATED
    session = scope.get("session")
    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if not persistent_id:
        return CLOSE_UNAUTHENTICATED
    device = Device.from_persistent_id(persistent_id)
    # Same binding the OTP middleware enforces for pages: the device is the user's and confirmed.
    if device is None or device.user_id != user.pk or not getattr(device, "confirmed", False):
        return CLOSE_UNAUTHENTICATED
    if not user.has_perm(perm(VIEW_CONSOLE)):
        return CLOSE_FORBIDDEN
    return 0


def _after_cursor(scope: dict[str, Any]) -> int | None:
    raw = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after", [""])[0]
    return int(raw) if raw.isdigit() else None


class TimelineConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Follows one shipment, mission or incident timeline (or all incidents) live."""

    subject: live.Subject | None = None

    async def connect(self) -> None:
        self._sent: set[int] = set()
        self._sent_order: deque[int] = deque()
        self.subject = None
        # Accept first so the browser receives our close code (a refused
        # handshake only shows up as 1006) and stops retrying on 44xx.
        await self.accept()
        code = await database_sync_to_async(authorize)(self.scope)
        if code:
            await self.close(code=code)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        kind = kwargs.get("kind", "incidents")
        try:
            subject = await database_sync_to_async(live.subject_resolve)(kind=kind, pk=int(kwargs.get("pk") or 0))
        except live.SubjectNotFound:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await live.relay_ensure()
        self.subject = subject
        for group in subject.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        # Joined before replaying: an event committed meanwhile arrives both
        # ways and is sent once (see _send_event), so a reconnect misses nothing.
        after = _after_cursor(self.scope)
        cursor = after or 0
        if after is not None:
            for message in await database_sync_to_async(live.replay_after)(subject, after):
                await self._send_event(message)
                cursor = max(cursor, int(message["id"]))
        await self.send_json({"type": "ready", "kind": subject.kind, "id": subject.pk, "cursor": cursor})

    async def disconnect(self, code: int) -> None:
        if self.subject is not None:
            for group in self.subject.groups:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The socket is one-way; a ping keeps idle proxies from closing it.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def domain_event(self, message: dict[str, Any]) -> None:
        # One short span per push, in the trace of the change (never one for the whole socket).
        with tracing.span_from("live push domain.event", message.get("traceparent"), kind=SpanKind.PRODUCER):
            await self._send_event(message["event"])

    async def _send_event(self, event: dict[str, Any]) -> None:
        event_id = int(event["id"])
        if event_id in self._sent:
            return
        self._sent.add(event_id)
        self._sent_order.append(event_id)
        if len(self._sent_order) > _SENT_MEMORY:
            self._sent.discard(self._sent_order.popleft())
        await self.send_json({"type": "event", "event": event})
