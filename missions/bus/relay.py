"""The transactional outbox relay: the event record and the telemetry samples, in order, onto the bus.

Both tables are the outbox: a row exists once the transaction that wrote it
committed. ``Relay`` reads each from its cursor (``BusCursor``) in id order,
publishes what it read, waits for JetStream's acks and only then moves the
cursor, so it can be killed at any moment and resumes from the last
acknowledged position: at least once, with JetStream dropping repeats by
``Nats-Msg-Id`` (the event's id; ``telemetry-<first>-<last>`` for a batch)
inside the stream's duplicate window, which is longer than the relay ever
takes to retry.

An id the cursor reaches but that is not in the table yet may be a
transaction still open: the cursor waits for it ``BUS_GAP_GRACE_SECONDS``
(rows after it are published meanwhile, once), then takes it for a rolled back
one. One relay publishes at a time (a database lease); another waits in standby.

A message the bus cannot take (larger than its max payload) is recorded as a
``BusRefusal`` with the reason, logged and counted; telemetry batches are split
to fit first. Security events are not put on the bus (``types.on_bus``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.db.utils import DatabaseError
from django.utils import timezone

from missions.bus.envelopes import (
    event_row_envelope,
    event_rows,
    event_subject,
    telemetry_envelope,
    telemetry_subject,
)
from missions.bus.publisher import Outgoing, Publisher, PublishError, StreamSpec
from missions.bus.types import on_bus
from missions.models import AuditEvent, TelemetrySample
from missions.models.bus import BusCursor, BusRefusal
from tms_console.health import heartbeat_record, lease_acquire, lease_release

log = logging.getLogger(__name__)

LEASE_NAME = "bus-relay"
HEARTBEAT_NAME = "bus-relay"
LEASE_SECONDS = 15.0
HEARTBEAT_SECONDS = 2.0
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
TELEMETRY_ROWS_PER_ROUND = 10_000
EVENTS, TELEMETRY = "events", "telemetry"
STANDBY = "standby: another relay publishes"


def stream_specs() -> list[StreamSpec]:
    prefix = settings.BUS_SUBJECT_PREFIX
    common = {
        "max_age_seconds": float(settings.BUS_MAX_AGE_HOURS) * 3600,
        "duplicate_window_seconds": float(settings.BUS_DUPLICATE_WINDOW_SECONDS),
    }
    return [
        StreamSpec(
            name=settings.BUS_EVENTS_STREAM,
            subjects=[f"{prefix}.events.>"],
            max_bytes=int(settings.BUS_EVENTS_MAX_BYTES),
            **common,
        ),
        StreamSpec(
            name=settings.BUS_TELEMETRY_STREAM,
            subjects=[f"{prefix}.telemetry.>"],
            max_bytes=int(settings.BUS_TELEMETRY_MAX_BYTES),
            **common,
        ),
    ]


class Gaps:
    """Ids the cursor is waiting for, and since when."""

    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.first_seen: dict[int, float] = {}

    def advance(self, cursor: int, handled: Iterable[int]) -> int:
        """The furthest position with every id up to it handled, or missing for longer than the grace.

        A run of missing ids is waited for once, as a whole (a rolled-back bulk insert leaves
        thousands), from when the cursor first met it.
        """
        done = sorted(i for i in handled if i > cursor)
        now = self.clock()
        position, expected = cursor, cursor + 1
        for i in done:
            if i > expected and now - self.first_seen.setdefault(expected, now) < self.grace_seconds:
                break
            position, expected = i, i + 1
        self.first_seen = {i: seen for i, seen in self.first_seen.items() if i > position}
        return position


def cursor_get(name: str) -> BusCursor:
    cursor, _ = BusCursor.objects.get_or_create(name=name)
    return cursor


def cursor_advance(name: str, position: int, published: int) -> None:
    """Move the cursor forward (never back, whoever else moved it) and count what was published, in one
    statement: a relay killed at any point leaves the position and the count consistent."""
    BusCursor.objects.filter(name=name).update(
        position=Greatest(F("position"), Value(position)), published=F("published") + published
    )


def refusal_record(*, stream: str, message: Outgoing, reason: str) -> None:
    BusRefusal.objects.create(
        stream=stream,
        message_id=message.message_id[:120],
        subject=message.subject[:255],
        size_bytes=len(message.payload),
        reason=reason[:500],
    )
    log.error(
        "bus refused a message",
        extra={"stream": stream, "message_id": message.message_id, "size": len(message.payload), "reason": reason},
    )


def _event_rows_after(after: int, limit: int) -> list[dict[str, Any]]:
    try:
        return event_rows(AuditEvent.objects.filter(pk__gt=after).order_by("pk")[:limit])
    except DatabaseError:
        close_old_connections()
        raise


class ReadAhead:
    """The next batch of event rows, read on a thread of its own (its own database connection) while the
    batch before it is published and its acks awaited: the relay's reads wait on the database, its
    publishing on NATS, and the two waits overlap.

    A batch read ahead from just after the previous one is used only if the cursor then moved exactly
    there, every row of that batch published and none waited for as a gap; otherwise it is dropped and
    the round reads from the cursor as usual. Either read sees the rows committed when it ran, so
    nothing depends on which one it was. Never used inside a transaction of the caller's (rows it
    wrote are invisible to another connection): the relay runs in autocommit.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[int, Future[list[dict[str, Any]]]] | None = None

    def start(self, after: int, limit: int) -> None:
        if connection.in_atomic_block:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bus-read-ahead")
        self._pending = (after, self._pool.submit(_event_rows_after, after, limit))

    def take(self, cursor: int) -> list[dict[str, Any]] | None:
        """The rows read ahead, if they start right after ``cursor``; None: read from the cursor."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        after, future = pending
        try:
            rows = future.result()
        except DatabaseError:
            return None  # the round reads again, on the relay's own connection, and reports what fails there
        return rows if after == cursor and rows else None

    def close(self) -> None:
        """Wait for a read in progress and close the thread's database connection."""
        pool, self._pool, self._pending = self._pool, None, None
        if pool is not None:
            with contextlib.suppress(DatabaseError):
                pool.submit(connection.close).result()
            pool.shutdown(wait=True)


class Relay:
    def __init__(self, publisher: Publisher, *, holder: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.publisher = publisher
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        grace = float(settings.BUS_GAP_GRACE_SECONDS)
        self.gaps = {EVENTS: Gaps(grace, clock), TELEMETRY: Gaps(grace, clock)}
        self.sent: dict[str, set[int]] = {EVENTS: set(), TELEMETRY: set()}  # published past a gap, not yet passed
        self.streams_ready = False
        self.state = "starting"
        self.last_error = ""
        self._lease_until = 0.0
        self._last_heartbeat = 0.0
        self.read_ahead = ReadAhead()

    # --- one round per source ---------------------------------------------------------

    def events_round(self) -> int:
        """Publish the next events after the cursor; the number of messages acknowledged."""
        cursor = cursor_get(EVENTS).position
        batch = int(settings.BUS_BATCH_SIZE)
        rows = self.read_ahead.take(cursor)
        if rows is None:
            rows = event_rows(AuditEvent.objects.filter(pk__gt=cursor).order_by("pk")[:batch])
        if not rows:
            return 0
        if len(rows) == batch:  # more are likely waiting: read them while this batch is on its way
            self.read_ahead.start(rows[-1]["pk"], batch)
        stream = settings.BUS_EVENTS_STREAM
        limit = self.publisher.max_payload()
        handled: set[int] = set()
        outgoing: list[tuple[int, Outgoing]] = []
        sent = self.sent[EVENTS]
        for row in rows:
            pk = row["pk"]
            if pk in sent or not on_bus(row["action"]):
                handled.add(pk)
                continue
            message = Outgoing(subject=event_subject(row), payload=event_row_envelope(row), message_id=str(pk))
            if len(message.payload) > limit:
                refusal_record(
                    stream=stream, message=message, reason=f"{len(message.payload)} bytes; the bus takes {limit}"
                )
                handled.add(pk)
                continue
            outgoing.append((pk, message))
        self.publisher.publish(stream, [message for _, message in outgoing])
        return self._settle(EVENTS, cursor, handled | {pk for pk, _ in outgoing}, published=len(outgoing))

    def telemetry_round(self) -> int:
        """Publish the samples after the cursor, one message per carrier (split to fit); messages acknowledged."""
        cursor = cursor_get(TELEMETRY).position
        rows = list(
            TelemetrySample.objects.filter(pk__gt=cursor)
            .order_by("pk")
            .values(
                "pk", "mission_id", "mission__carrier__slug", "vehicle__external_id", "recorded_at",
                "lat", "lon", "speed_kph", "heading_deg", "autonomy_mode", "event_id",
            )[:TELEMETRY_ROWS_PER_ROUND]
        )  # fmt: skip
        if not rows:
            return 0
        by_carrier: dict[str, list[dict[str, Any]]] = {}
        handled: set[int] = set()
        for row in rows:
            handled.add(row["pk"])
            if row["pk"] in self.sent[TELEMETRY]:
                continue
            by_carrier.setdefault(row["mission__carrier__slug"] or "_", []).append(_sample(row))
        stream = settings.BUS_TELEMETRY_STREAM
        limit = self.publisher.max_payload()
        now = datetime.now(tz=UTC)
        messages: list[Outgoing] = []
        for slug, samples in by_carrier.items():
            messages.extend(self._telemetry_messages(stream, slug, samples, limit, now))
        self.publisher.publish(stream, messages)
        return self._settle(TELEMETRY, cursor, handled, published=len(messages))

    def _telemetry_messages(
        self, stream: str, slug: str, samples: list[dict[str, Any]], limit: int, now: datetime
    ) -> list[Outgoing]:
        payload = telemetry_envelope(carrier_slug=slug, samples=samples, at=now)
        message = Outgoing(
            subject=telemetry_subject(slug),
            payload=payload,
            message_id=f"telemetry-{samples[0]['_id']}-{samples[-1]['_id']}",
        )
        if len(payload) <= limit:
            return [message]
        if len(samples) == 1:
            refusal_record(stream=stream, message=message, reason=f"{len(payload)} bytes; the bus takes {limit}")
            return []
        half = len(samples) // 2
        return self._telemetry_messages(stream, slug, samples[:half], limit, now) + self._telemetry_messages(
            stream, slug, samples[half:], limit, now
        )

    def _settle(self, source: str, cursor: int, handled: set[int], *, published: int) -> int:
        self.sent[source] |= handled
        position = self.gaps[source].advance(cursor, handled)
        cursor_advance(source, position, published)
        self.sent[source] = {i for i in self.sent[source] if i > position}
        return published

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        try:
            while not stop.is_set():
                try:
                    if not self._hold_lease():
                        # The heartbeat is the publishing relay's: a standby one says so in its log only.
                        if self.state != STANDBY:
                            log.info("bus relay in standby: another relay holds the lease")
                        self.state = STANDBY
                        stop.wait(LEASE_SECONDS / 3)
                        continue
                    if not self.streams_ready:
                        self.publisher.ensure_streams(stream_specs())
                        self.streams_ready = True
                    published = self.events_round() + self.telemetry_round()
                    self.state, self.last_error, backoff = "publishing", "", BACKOFF_FIRST_SECONDS
                    self._heartbeat()
                    if not published:
                        stop.wait(float(settings.BUS_POLL_SECONDS))
                except PublishError as exc:
                    self._failed("waiting for the bus", exc)
                    self.streams_ready = False
                    stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                except DatabaseError as exc:
                    close_old_connections()
                    self._failed("waiting for the database", exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        finally:
            self.read_ahead.close()
            was_publishing = self.state != STANDBY
            self.state = "stopped"
            try:
                if was_publishing:
                    self._heartbeat(force=True)
                lease_release(name=LEASE_NAME, holder=self.holder)
            except DatabaseError:
                log.warning("relay stopped without releasing its lease (it expires by itself)")

    def _hold_lease(self) -> bool:
        now = self.clock()
        if now < self._lease_until - LEASE_SECONDS / 2:
            return True
        if lease_acquire(name=LEASE_NAME, holder=self.holder, seconds=LEASE_SECONDS):
            self._lease_until = now + LEASE_SECONDS
            return True
        self._lease_until = 0.0
        return False

    def _failed(self, state: str, exc: BaseException) -> None:
        changed = state != self.state
        self.state, self.last_error = state, str(exc)[:300]
        # One warning when the state changes, not one per retry.
        (log.warning if changed else log.debug)("bus relay retrying", extra={"state": state, "error": self.last_error})
        with contextlib.suppress(DatabaseError):  # the database is what failed: the next round says so
            self._heartbeat()

    def _heartbeat(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now
        heartbeat_record(name=HEARTBEAT_NAME, detail={"state": self.state, "error": self.last_error, **lag()})


def lag() -> dict[str, Any]:
    """How far each cursor is behind its table, in rows (by id) and in seconds.

    Seconds: for events, the age of the oldest unpublished one; for telemetry
    (whose samples may be old when a truck backfills), how long the cursor has
    not moved while rows wait.
    """
    out: dict[str, Any] = {}
    now = timezone.now()
    cursors = {c.name: c for c in BusCursor.objects.all()}
    for source, model in ((EVENTS, AuditEvent), (TELEMETRY, TelemetrySample)):
        cursor = cursors.get(source)
        position = cursor.position if cursor else 0
        newest = model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        behind = max(newest - position, 0)
        seconds = 0.0
        if behind and source == EVENTS:
            oldest = AuditEvent.objects.filter(pk__gt=position).order_by("pk").values_list("occurred_at", flat=True)
            first = oldest.first()
            seconds = (now - first).total_seconds() if first else 0.0
        elif behind and cursor is not None:
            seconds = (now - cursor.updated_at).total_seconds()
        out[f"{source}_position"] = position
        out[f"{source}_published"] = cursor.published if cursor else 0
        out[f"{source}_lag_rows"] = behind
        out[f"{source}_lag_seconds"] = round(max(seconds, 0.0), 1)
    return out


def _sample(row: Any) -> dict[str, Any]:
    recorded: datetime = row["recorded_at"]
    return {
        "_id": row["pk"],
        "mission_id": row["mission_id"],
        "vehicle_id": row["vehicle__external_id"],
        "ts": recorded.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "lat": row["lat"],
        "lon": row["lon"],
        "speed_kph": row["speed_kph"],
        "heading_deg": row["heading_deg"],
        "autonomy_mode": row["autonomy_mode"] or None,
        "event_id": str(row["event_id"]) if row["event_id"] else None,
    }
