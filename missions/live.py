"""Live updates: which events a timeline page follows, replay, and the embedded-mode relay.

With Redis (channels_redis) ``missions.events`` broadcasts every event after
its transaction commits, from whichever process wrote it. With the
in-process channel layer a Celery worker or another web process cannot
reach this process's layer, so here the web process tails the
``AuditEvent`` table (the outbox) and pushes new rows to the groups itself.
The relay starts lazily on the first websocket connection and runs once per
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import QuerySet

from missions import selectors
from missions.events import event_groups, event_message, live_message
from missions.models import AuditEvent, Mission, Shipment

log = logging.getLogger(__name__)

RELAY_INTERVAL_SECONDS = 0.5
# Ids below the relay's cursor that are not visible yet may belong to a
# transaction that is still open (PostgreSQL hands out ids at insert time,
# not at commit). They are re-checked for this long, then given up on
# (a rolled-back insert leaves a permanent hole).
GAP_GRACE_SECONDS = 15.0
MAX_TRACKED_GAP = 1000
BATCH_SIZE = 500
REPLAY_LIMIT = 1000


class SubjectNotFound(LookupError):
    """The page's shipment, mission or incident does not exist."""


@dataclass(frozen=True)
class Subject:
    """What a timeline page follows: its channel-layer groups and its replay query."""

    kind: str
    pk: int
    groups: tuple[str, ...]


# Pages of apps above the core (an incident, the incident list) follow their own rooms, which
# those apps declare from their AppConfig.ready: how to find the subject and replay its events.
RoomResolver = Callable[[int], tuple[str, ...]]
RoomEvents = Callable[[int], QuerySet[AuditEvent]]


@dataclass(frozen=True)
class Room:
    resolve: RoomResolver  # the page's groups; raises SubjectNotFound when the subject is gone
    events: RoomEvents  # every event the page shows, oldest first


_rooms: dict[str, Room] = {}


def room_register(kind: str, *, resolve: RoomResolver, events: RoomEvents) -> None:
    _rooms[kind] = Room(resolve=resolve, events=events)


def room_kinds() -> tuple[str, ...]:
    return ("shipment", "mission", *sorted(_rooms))


def subject_resolve(*, kind: str, pk: int) -> Subject:
    """The groups for a page (named as in ``missions.events.event_groups``)."""
    if kind == "shipment":
        if not Shipment.objects.filter(pk=pk).exists():
            raise SubjectNotFound(kind)
        return Subject(kind, pk, (f"shipment.{pk}",))
    if kind == "mission":
        shipment_id = Mission.objects.filter(pk=pk).values_list("shipment_id", flat=True).first()
        if shipment_id is None:
            raise SubjectNotFound(kind)
        # The mission page shows the shipment's events too (tenders, offers).
        return Subject(kind, pk, (f"mission.{pk}", f"shipment.{shipment_id}"))
    room = _rooms.get(kind)
    if room is None:
        raise SubjectNotFound(kind)
    return Subject(kind, pk, room.resolve(pk))


def subject_events(subject: Subject) -> QuerySet[AuditEvent]:
    """Every event the subject's page shows, oldest first (same rows as the server-rendered timeline)."""
    if subject.kind == "shipment":
        return selectors.shipment_timeline(shipment=Shipment.objects.get(pk=subject.pk))
    if subject.kind == "mission":
        return selectors.mission_timeline(mission=Mission.objects.get(pk=subject.pk))
    return _rooms[subject.kind].events(subject.pk)


def replay_after(subject: Subject, after: int) -> list[dict[str, Any]]:
    """The subject's events with an id above ``after`` (the reconnect cursor), as live messages."""
    rows = subject_events(subject).filter(id__gt=after).order_by("id")[:REPLAY_LIMIT]
    return [event_message(e) for e in rows]


def relay_needed() -> bool:
    """True when events are not broadcast at commit (in-process layer): the relay must tail the table."""
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    return backend.endswith("InMemoryChannelLayer")


@dataclass
class _Relay:
    loop: asyncio.AbstractEventLoop
    cursor: int = 0
    gaps: dict[int, float] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def poll(self) -> list[tuple[list[str], dict[str, Any]]]:
        """New rows since the cursor plus late-committed rows that filled a gap, oldest first."""
        rows = list(AuditEvent.objects.filter(id__gt=self.cursor).order_by("id")[:BATCH_SIZE])
        late = list(AuditEvent.objects.filter(id__in=list(self.gaps))) if self.gaps else []
        now = time.monotonic()
        expected = self.cursor + 1
        for row in rows:
            if row.pk - expected <= MAX_TRACKED_GAP:
                for missing in range(expected, row.pk):
                    self.gaps[missing] = now
            expected = row.pk + 1
        if rows:
            self.cursor = rows[-1].pk
        for row in late:
            self.gaps.pop(row.pk, None)
        for gap_id, seen in list(self.gaps.items()):
            if now - seen > GAP_GRACE_SECONDS:
                del self.gaps[gap_id]
        out = sorted(late + rows, key=lambda e: e.pk)
        return [(event_groups(e), live_message(e)) for e in out]


_relay: _Relay | None = None


def _max_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


async def _relay_run(relay: _Relay) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    while True:
        try:
            batch = await database_sync_to_async(relay.poll)()
            for groups, message in batch:
                for group in groups:
                    await layer.group_send(group, message)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep relaying: one bad poll must not end live updates for the process
            log.exception("live relay poll failed")
        await asyncio.sleep(RELAY_INTERVAL_SECONDS)


async def relay_ensure() -> None:
    """Start the relay for this event loop unless it runs already (or is not needed).

    Its cursor starts at the newest event id: a page asks for older events
    through its own ``?after=`` replay, so nothing is sent twice by design
    and nothing is lost between the two.
    """
    global _relay
    if not relay_needed():
        return
    loop = asyncio.get_running_loop()
    current = _relay
    if current is not None and current.loop is loop and (current.task is None or not current.task.done()):
        await current.ready.wait()
        return
    relay = _Relay(loop=loop)
    _relay = relay  # claimed before the first await, so concurrent connects share it
    try:
        relay.cursor = await database_sync_to_async(_max_event_id)()
    except BaseException:
        _relay = None
        raise
    relay.task = loop.create_task(_relay_run(relay), name="tms-live-relay")
    relay.ready.set()


async def relay_stop() -> None:
    """Stop the relay (tests and shutdown)."""
    global _relay
    relay, _relay = _relay, None
    if relay is None or relay.task is None:
        return
    relay.task.cancel()
    # RuntimeError: the task belongs to a loop that has already closed (tests).
    with contextlib.suppress(asyncio.CancelledError, RuntimeError):
        await relay.task


def relay_cursor() -> int | None:
    """The id of the newest event the relay has seen (None when it is not running)."""
    return _relay.cursor if _relay is not None else None
