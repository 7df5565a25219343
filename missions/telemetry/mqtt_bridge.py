"""MQTT bridge: vehicle telemetry topics in, batches into the one ingest path.

Topics are ``<prefix>/<carrier_slug>/<vehicle_id>`` (prefix ``tms/telemetry``).
A payload is one event object, a list of events or ``{"events": [...]}``; an
event without ``vehicle_id`` takes it from the topic, one naming another
vehicle is rejected. Which carrier may publish under which slug is the
broker's job (an ACL per carrier account, see docs/telemetry.md); the bridge then
checks, like every path, that each mission belongs to that carrier.

Vehicle identity (docs/identity.md): for a carrier with a SPIFFE trust domain,
each message carries the vehicle's X.509-SVID and a signature over its payload
made with the SVID's key (MQTT 5 user properties ``x509-svid`` and
``x509-svid-signature``); the bridge checks both and that the topic names the
SVID's vehicle (``missions.identity.gate.mqtt_identity``). A refused message is
a dead letter of kind ``svid_<reason>``, counted like on every path.

The paho network thread only queues messages. The bridge's own thread drains
the queue every ``flush_seconds`` or ``flush_events`` messages, groups them by
carrier and calls ``ingest_events`` once per carrier. A message is
acknowledged to the broker (QoS 1, manual acks) only once it is settled: each
of its events committed, a duplicate or refused. If a batch cannot be stored,
its messages are tried one by one, so a clean message is never lost beside
one that fails; a message that still fails stays unacknowledged and is tried
again later, and a crash meanwhile gets it redelivered to a persistent session.
A malformed payload, or an event holding a string no column can store
(U+0000, a lone surrogate), is counted and refused with one log line per
message, and never stops the stream.

Stopping (``run`` once its ``stop`` event is set, on SIGTERM): the bridge
takes no more messages from the broker (one that arrives is neither queued
nor acknowledged), stores and acknowledges what it had queued, within the
drain time, and disconnects; the acknowledgements go out before the
DISCONNECT. Whatever is left unacknowledged (not reached in time, or waiting
for a retry) is redelivered by the broker to the next bridge with the same
client id (a persistent session, ``MQTT_CLIENT_ID``).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connection
from opentelemetry.trace import SpanKind

from missions.identity.gate import MQTT_SIGNATURE_PROPERTY, MQTT_SVID_PROPERTY, mqtt_identity
from missions.identity.svid import SvidRefused
from missions.models import Carrier
from missions.telemetry.dead_letters import BRIDGE_HEARTBEAT, dead_letter_record
from missions.telemetry.ingest import IngestResult, MissionCache, ingest_events, telemetry_batch_max
from missions.telemetry.mqtt_config import BrokerConfig as BrokerConfig
from missions.telemetry.mqtt_config import broker_config as broker_config
from tms_console import tracing
from tms_console.health import heartbeat_record
from tms_console.unstorable import json_parse, unstorable_find

log = logging.getLogger(__name__)

QUEUE_MAX = 100_000
INGEST_ATTEMPTS = 3
# Messages that could not be stored wait, unacknowledged, and are tried again after
# RETRY_FIRST_SECONDS, doubling up to RETRY_MAX_SECONDS; past RETRY_MAX of them no new ones are taken.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
RETRY_MAX = 10_000
# A message that failed on its own this many times, while the store took others, goes to the dead letters.
POISON_ATTEMPTS = 5
# The bridge notes it is alive (with its counters, read by /readyz and /metrics) this often.
HEARTBEAT_SECONDS = 10.0
# While collecting a batch, the bridge looks at its stop event this often.
STOP_POLL_SECONDS = 0.05


# MQTT 5's "session never expires" (clean_start off: a restarted bridge gets what it missed).
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
# A batch's span links to at most this many of its messages' publishers.
MAX_PUBLISHER_LINKS = 16


@dataclass
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    traceparent: str = ""  # the publisher's, from an MQTT 5 user property
    svid: str = ""  # the vehicle's X.509-SVID (base64 DER), from an MQTT 5 user property
    svid_signature: str = ""  # base64 signature over the payload with the SVID's key


def _svid_properties(message: Any) -> tuple[str, str]:
    """The SVID and payload signature a vehicle put in the message's user properties (empty if none)."""
    svid = signature = ""
    properties = getattr(message, "properties", None)
    for name, value in getattr(properties, "UserProperty", None) or []:
        if name == MQTT_SVID_PROPERTY and isinstance(value, str) and len(value) <= 16_384:
            svid = value
        elif name == MQTT_SIGNATURE_PROPERTY and isinstance(value, str) and len(value) <= 1_024:
            signature = value
    return svid, signature


def _traceparent(message: Any) -> str:
    """A W3C traceparent the publisher put in the message's user properties ("" if none)."""
    properties = getattr(message, "properties", None)
    for name, value in getattr(properties, "UserProperty", None) or []:
        if name == "traceparent" and isinstance(value, str) and len(value) <= 55:
            return value
    return ""


@dataclass
class _Parsed:
    """A message's events on their way to storage, and what was refused before they got there."""

    message: _Message
    carrier: Carrier
    events: list[Any]
    refused: int = 0  # events refused before ingest (a vehicle that is not the topic's)
    vehicle_cert: str = ""  # "sha256:<hex>" of the SVID the message proved it holds
    first_reason: str = ""
    attempts: int = 0  # failed attempts to store it
    retry_at: float = 0.0  # monotonic time of the next attempt


def _chunks(items: list[_Parsed], size: int) -> Iterator[list[_Parsed]]:
    """Whole messages, up to ``size`` events a chunk (a larger message is a chunk of its own)."""
    chunk: list[_Parsed] = []
    count = 0
    for item in items:
        if chunk and count + len(item.events) > size:
            yield chunk
            chunk, count = [], 0
        chunk.append(item)
        count += len(item.events)
    if chunk:
        yield chunk


class MqttBridge:
    """Subscribes to the telemetry topics and feeds ``ingest_events`` in batches."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        topic_prefix: str = "tms/telemetry",
        flush_seconds: float = 0.2,
        flush_events: int = 500,
        client_id: str = "",
        persistent_session: bool = False,
    ) -> None:
        self.config = config
        self.topic_prefix = topic_prefix.strip("/")
        self.flush_seconds = flush_seconds
        self.flush_events = max(1, min(flush_events, telemetry_batch_max()))
        self.client_id = client_id or f"tms-mqtt-ingest-{uuid.uuid4().hex[:8]}"
        self.persistent_session = persistent_session
        self.stats: Counter[str] = Counter()
        self.subscribed = threading.Event()
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=QUEUE_MAX)
        self._carriers: dict[str, Carrier] = {}
        self._caches: dict[int, MissionCache] = {}
        self._retry: list[_Parsed] = []
        self._unrecorded: set[int] = set()
        self._client: Any = None
        # Once closed (stopping), a message from the broker is left to it: not queued, not acknowledged.
        self._intake = threading.Lock()
        self._intake_closed = False
        self._held: list[_Message] = []  # collected when the stop came; stored by drain()

    # --- broker side (paho thread) ---------------------------------------------------

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        # MQTT 5: publishers may send a W3C traceparent as a user property (tms_console.tracing).
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        connect_properties = None
        if self.persistent_session:
            # The broker keeps the session (subscription and unacknowledged QoS 1 messages) while we are away.
            connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password or None)
        if self.config.tls:
            # With a client certificate (the bridge's own SVID) where the broker requires one.
            client.tls_set(
                ca_certs=self.config.ca_file or None,
                certfile=self.config.client_cert or None,
                keyfile=self.config.client_key or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=30,
            clean_start=not self.persistent_session,
            properties=connect_properties,
        )
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("MQTT connection refused", extra={"reason": str(reason_code)})
            return
        client.subscribe(f"{self.topic_prefix}/+/+", qos=1)
        log.info("MQTT connected", extra={"host": self.config.host, "topic": f"{self.topic_prefix}/+/+"})

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any = None) -> None:
        self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._intake:
            if self._intake_closed:
                self.stats["left_to_broker"] += 1
                return
            try:
                self._queue.put_nowait(
                    _Message(
                        message.topic,
                        bytes(message.payload),
                        message.mid,
                        message.qos,
                        _traceparent(message),
                        *_svid_properties(message),
                    )
                )
            except queue.Full:
                # Back-pressure: not acknowledged, so the broker redelivers it after a reconnect.
                self.stats["overflow"] += 1

    def intake_close(self) -> None:
        """Take no more messages from the broker; those already queued are still stored and acknowledged."""
        with self._intake:
            self._intake_closed = True

    # --- ingest side (the bridge's thread) ------------------------------------------------

    def run(self, stop: threading.Event, *, stats_every_seconds: float = 30.0, drain_seconds: float = 10.0) -> None:
        """Pump until ``stop`` is set, then drain (see the module docstring) for up to ``drain_seconds``."""
        self.start()
        self.heartbeat()  # /readyz knows the bridge from its start, not only after the first period
        last_stats = last_beat = time.monotonic()
        try:
            while not stop.is_set():
                self.pump(stop=stop)
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    self.heartbeat()
                    last_beat = time.monotonic()
                if time.monotonic() - last_stats >= stats_every_seconds:
                    log.info("MQTT ingest stats", extra={"stats": dict(self.stats)})
                    last_stats = time.monotonic()
            self.drain(time.monotonic() + drain_seconds)
        finally:
            self.stop()

    def drain(self, deadline: float) -> None:
        """Stop taking messages, then store and acknowledge the buffered ones until done or ``deadline``."""
        self.intake_close()
        held, self._held = self._held, []
        queued, started = len(held) + self._queue.qsize(), time.monotonic()
        settled = 0
        if held:
            self._ingest(held)
            settled += len(held)
        while time.monotonic() < deadline:
            handled = self.pump(wait=False)
            if not handled:
                break
            settled += handled
        left = self._queue.qsize() + len(self._retry)
        log.log(
            logging.WARNING if left else logging.INFO,
            "MQTT bridge drained" if not left else "MQTT bridge stopping with messages left for redelivery",
            extra={
                "event": "shutdown.drained",
                "component": "mqtt-bridge",
                "queued": queued,
                "handled": settled,
                "left_unacknowledged": left,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def heartbeat(self) -> None:
        """Record that the bridge is alive, with its counters (``/readyz``, ``/metrics``)."""
        try:
            heartbeat_record(name=BRIDGE_HEARTBEAT, detail={"stats": dict(self.stats), "retrying": len(self._retry)})
        except Exception:
            log.warning("MQTT bridge heartbeat not recorded", exc_info=True)
            _recycle_connection()

    def pump(self, *, wait: bool = True, stop: threading.Event | None = None) -> int:
        """Collect one batch (up to ``flush_events`` or ``flush_seconds``) and ingest it; return messages handled.

        Messages whose events could not be stored earlier come back here when their retry is due.
        Once ``stop`` is set the collection ends at once, the intake closes, and the batch is left
        for ``drain`` to store with the rest of what was buffered.
        """
        due = self._due_retries()
        batch: list[_Message] = []
        deadline = time.monotonic() + self.flush_seconds
        # While many messages wait for a retry (the database is down), take no new ones: the
        # queue fills up and the broker holds the rest, unacknowledged.
        while len(batch) < self.flush_events and len(self._retry) < RETRY_MAX:
            if stop is not None and stop.is_set():
                break
            timeout = deadline - time.monotonic()
            try:
                if wait and timeout > 0 and not due:
                    batch.append(self._queue.get(timeout=min(timeout, STOP_POLL_SECONDS)))
                else:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                if not wait or due or time.monotonic() >= deadline:
                    break
        if stop is not None and stop.is_set():
            self.intake_close()
            self._held.extend(batch)
            self._retry.extend(due)
            return 0
        if batch or due:
            self._ingest(batch, due)
        return len(batch) + len(due)

    def _due_retries(self) -> list[_Parsed]:
        now = time.monotonic()
        due = [item for item in self._retry if item.retry_at <= now]
        if due:
            self._retry = [item for item in self._retry if item.retry_at > now]
        return due

    def _ingest(self, batch: list[_Message], retries: list[_Parsed] | None = None) -> None:
        _recycle_connection()
        refused: list[_Message] = []
        by_carrier: dict[int, list[_Parsed]] = {}
        for item in retries or []:
            by_carrier.setdefault(item.carrier.pk, []).append(item)
        for message in batch:
            self.stats["received"] += 1
            parsed = self._parse(message)
            if parsed is None:
                if message.mid not in self._unrecorded:
                    refused.append(message)  # refused as a whole, kept as a dead letter: nothing to store
                self._unrecorded.discard(message.mid)
                continue
            by_carrier.setdefault(parsed.carrier.pk, []).append(parsed)
        self._ack(refused)
        for items in by_carrier.values():
            for chunk in _chunks(items, self.flush_events):
                self._ingest_chunk(chunk)

    def _ingest_chunk(self, chunk: list[_Parsed]) -> None:
        """Store the events of whole messages of one carrier; acknowledge each message once settled.

        A message is settled when each of its events is committed, a duplicate
        or refused. If the chunk cannot be stored, each message is tried once on
        its own, so a clean message is never held back by another; one that
        fails is not acknowledged and is retried later (a crash meanwhile gets
        it redelivered to a persistent session). After ``INGEST_ATTEMPTS``
        failures in a row the store itself is taken to be down, and the rest of
        the chunk waits for its retry untried.
        """
        attempts = INGEST_ATTEMPTS if len(chunk) > 1 or chunk[0].attempts == 0 else 1
        if self._settle(chunk, attempts=attempts):
            return
        if len(chunk) == 1:
            self._retry_or_dead_letter(chunk[0])
            return
        failures = 0
        for item in chunk:
            if failures < INGEST_ATTEMPTS and self._settle([item], attempts=1):
                failures = 0
                continue
            failures += 1
            self._retry_later(item)

    def _retry_or_dead_letter(self, item: _Parsed) -> None:
        """A message that failed alone again and again while the store works is poison: dead-letter it."""
        if item.attempts >= POISON_ATTEMPTS and self._dead_letter(
            item.message,
            kind="not_storable",
            reason=f"its events could not be stored after {item.attempts} attempts",
            carrier=item.carrier,
        ):
            self._ack([item.message])
            return
        self._retry_later(item)

    def _settle(self, chunk: list[_Parsed], *, attempts: int) -> bool:
        """Store the chunk's events, then count, log and acknowledge its messages; False if not stored."""
        carrier = chunk[0].carrier
        # One span per stored chunk (never per message or event), linked to the publishers' traces.
        publishers = list(dict.fromkeys(item.message.traceparent for item in chunk if item.message.traceparent))
        with tracing.span_from(
            "mqtt ingest",
            new_trace=True,
            kind=SpanKind.CONSUMER,
            links=[tracing.link_to(tp) for tp in publishers[:MAX_PUBLISHER_LINKS]],
            carrier=carrier.slug,
        ) as span:
            span.set_attribute("messaging.batch.message_count", len(chunk))
            events = [event for item in chunk for event in item.events]
            certs = [item.vehicle_cert for item in chunk for _ in item.events]
            result = self._store(carrier, events, certs if any(certs) else None, attempts=attempts)
        if result is None:
            return False
        self.stats["accepted"] += result.accepted
        self.stats["duplicates"] += result.duplicates
        self.stats["rejected"] += len(result.rejected)
        offset = 0
        for item in chunk:
            stop = offset + len(item.events)
            own = [r for r in result.rejected if offset <= r["index"] < stop]
            offset = stop
            if own:
                item.refused += len(own)
                item.first_reason = item.first_reason or str(own[0]["reason"])
            if item.refused:
                # One line per message, however many of its events were refused.
                log.info(
                    "MQTT events refused",
                    extra={
                        "carrier": carrier.slug,
                        "topic": item.message.topic[:200],
                        "refused": item.refused,
                        "events": item.refused - len(own) + len(item.events),
                        "reason": item.first_reason,
                    },
                )
        self._ack([item.message for item in chunk])
        return True

    def _store(
        self, carrier: Carrier, events: list[Any], certs: list[str] | None = None, *, attempts: int
    ) -> IngestResult | None:
        """Ingest ``events`` (in batches the ingest path accepts); None when they could not all be stored."""
        if not events:
            return IngestResult()
        cache = self._caches.setdefault(carrier.pk, MissionCache())
        total = IngestResult()
        for start in range(0, len(events), self.flush_events):
            part = events[start : start + self.flush_events]
            for attempt in range(1, attempts + 1):
                try:
                    result = ingest_events(
                        carrier=carrier,
                        events=part,
                        source="mqtt",
                        cache=cache,
                        vehicle_cert=certs[start : start + self.flush_events] if certs else "",
                    )
                    break
                except Exception:
                    log.exception("MQTT batch ingest failed", extra={"carrier": carrier.slug, "attempt": attempt})
                    _recycle_connection()
                    if attempt < attempts:
                        time.sleep(min(2.0, 0.2 * attempt))
            else:
                return None
            total.accepted += result.accepted
            total.duplicates += result.duplicates
            total.rejected.extend({"index": r["index"] + start, "reason": r["reason"]} for r in result.rejected)
        return total

    def _retry_later(self, item: _Parsed) -> None:
        item.attempts += 1
        item.retry_at = time.monotonic() + min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (item.attempts - 1))
        self._retry.append(item)
        self.stats["ingest_failed"] += 1
        log.warning(
            "MQTT message not stored; not acknowledged, retried later",
            extra={"topic": item.message.topic[:200], "events": len(item.events), "attempts": item.attempts},
        )

    def _ack(self, batch: list[_Message]) -> None:
        client = self._client
        if client is None:
            return
        for message in batch:
            if message.qos > 0:
                client.ack(message.mid, message.qos)

    def _malformed(self, kind: str, message: _Message, detail: str, carrier: Carrier | None = None) -> None:
        """A message refused as a whole: kept as a dead letter (one log line), then acknowledged."""
        self.stats[kind] += 1
        log.warning("MQTT message refused", extra={"kind": kind, "topic": message.topic[:200], "detail": detail})
        self._dead_letter(message, kind=kind, reason=detail, carrier=carrier)

    def _dead_letter(self, message: _Message, *, kind: str, reason: str, carrier: Carrier | None = None) -> bool:
        """Record the message for on-call; only a recorded message may be acknowledged."""
        try:
            dead_letter_record(
                source="mqtt", topic=message.topic, payload=message.payload, kind=kind, reason=reason, carrier=carrier
            )
        except Exception:  # the database is down: not acknowledged, so the broker keeps it
            log.exception("MQTT dead letter not recorded", extra={"topic": message.topic[:200]})
            _recycle_connection()
            self._unrecorded.add(message.mid)
            return False
        self.stats["dead_lettered"] += 1
        return True

    def _parse(self, message: _Message) -> _Parsed | None:
        parts = message.topic.split("/")
        prefix = self.topic_prefix.split("/")
        if len(parts) != len(prefix) + 2 or parts[: len(prefix)] != prefix or not parts[-1] or not parts[-2]:
            self._malformed("bad_topic", message, "expected <prefix>/<carrier_slug>/<vehicle_id>")
            return None
        slug, vehicle_id = parts[-2], parts[-1]
        carrier = self._carrier(slug)
        if carrier is None:
            self._malformed("unknown_carrier", message, f"no carrier {slug!r}")
            return None
        try:
            payload = json_parse(message.payload)
        except (ValueError, RecursionError):
            self._malformed("malformed_json", message, "payload is not UTF-8 JSON", carrier)
            return None
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            events = payload["events"]
            # Each event is judged on its own by the normalizer; a string that cannot be stored
            # anywhere else refuses the message.
            found = unstorable_find(payload, per_item=("events",))
            if found is not None:
                self._malformed("unstorable", message, found.reason(), carrier)
                return None
        elif isinstance(payload, list):
            events = payload
        else:
            events = [payload]
        parsed = _Parsed(message=message, carrier=carrier, events=[])
        for event in events:
            if isinstance(event, dict):
                if "vehicle_id" not in event:
                    event = {**event, "vehicle_id": vehicle_id}
                elif event["vehicle_id"] != vehicle_id:
                    self.stats["topic_mismatch"] += 1
                    parsed.refused += 1
                    parsed.first_reason = parsed.first_reason or "vehicle_id: does not match the topic"
                    continue
            parsed.events.append(event)  # non-objects are rejected (and counted) by the validator
        try:
            identity = mqtt_identity(
                carrier_id=carrier.pk,
                topic_vehicle=vehicle_id,
                svid_b64=message.svid,
                signature_b64=message.svid_signature,
                payload=message.payload,
                events=parsed.events,
            )
        except SvidRefused as refused:
            detail = f"{refused.code} ({refused.reason}): {refused.detail}"
            self._malformed(f"svid_{refused.reason}", message, detail, carrier)
            return None
        parsed.vehicle_cert = identity.fingerprint if identity is not None else ""
        return parsed

    def _carrier(self, slug: str) -> Carrier | None:
        carrier = self._carriers.get(slug)
        if carrier is None:
            # Only hits are cached: a carrier created later is picked up without a restart.
            carrier = Carrier.objects.filter(slug=slug).first()
            if carrier is not None:
                self._carriers[slug] = carrier
        return carrier


def _recycle_connection() -> None:
    # A long-running process must not keep a dead or expired connection;
    # inside an outer transaction (a test) the connection is not ours to close.
    if not connection.in_atomic_block:
        close_old_connections()
