"""MQTT bridge: vehicle telemetry topics in, batches into the one ingest path.

Topics are ``<prefix>/<carrier_slug>/<vehicle_id>`` (prefix ``tms/telemetry``).
A payload is one event object, a list of events or ``{"events": [...]}``; an
event without ``vehicle_id`` takes it from the topic, one naming another
vehicle is rejected. Which carrier may publish under which slug is the
broker's job (an ACL per carrier account, see docs/telemetry.md); the bridge then
checks, like every path, that each mission belongs to that carrier.

The paho network thread only queues messages. The bridge's own thread drains
the queue every ``flush_seconds`` or ``flush_events`` messages, groups them by
carrier and calls ``ingest_events`` once per carrier. Messages are
acknowledged to the broker (QoS 1, manual acks) only after their batch
committed, so a crash before that gets them redelivered to a persistent
session. A malformed payload is counted and logged and never stops the stream.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connection

from missions.models import Carrier
from missions.telemetry.ingest import MissionCache, ingest_events, telemetry_batch_max
from missions.telemetry.mqtt_config import BrokerConfig as BrokerConfig
from missions.telemetry.mqtt_config import broker_config as broker_config

log = logging.getLogger(__name__)

QUEUE_MAX = 100_000
INGEST_ATTEMPTS = 3


@dataclass
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


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
        self._client: Any = None

    # --- broker side (paho thread) ---------------------------------------------------

    def start(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not self.persistent_session,
            manual_ack=True,
        )
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password or None)
        if self.config.tls:
            client.tls_set(ca_certs=self.config.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_async(self.config.host, self.config.port, keepalive=30)
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
        try:
            self._queue.put_nowait(_Message(message.topic, bytes(message.payload), message.mid, message.qos))
        except queue.Full:
            # Back-pressure: not acknowledged, so the broker redelivers it after a reconnect.
            self.stats["overflow"] += 1

    # --- ingest side (the bridge's thread) ------------------------------------------------

    def run(self, stop: threading.Event, *, stats_every_seconds: float = 30.0) -> None:
        """Pump until ``stop`` is set, then flush what is queued and disconnect."""
        self.start()
        last_stats = time.monotonic()
        try:
            while not stop.is_set():
                self.pump()
                if time.monotonic() - last_stats >= stats_every_seconds:
                    log.info("MQTT ingest stats", extra={"stats": dict(self.stats)})
                    last_stats = time.monotonic()
            while self.pump(wait=False):
                pass
        finally:
            self.stop()

    def pump(self, *, wait: bool = True) -> int:
        """Collect one batch (up to ``flush_events`` or ``flush_seconds``) and ingest it; return messages handled."""
        batch: list[_Message] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.flush_events:
            timeout = deadline - time.monotonic()
            try:
                if wait and timeout > 0:
                    batch.append(self._queue.get(timeout=timeout))
                else:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if batch:
            self._ingest(batch)
        return len(batch)

    def _ingest(self, batch: list[_Message]) -> None:
        _recycle_connection()
        by_carrier: dict[int, tuple[Carrier, list[Any]]] = {}
        for message in batch:
            self.stats["received"] += 1
            parsed = self._parse(message)
            if parsed is None:
                continue
            carrier, events = parsed
            by_carrier.setdefault(carrier.pk, (carrier, []))[1].extend(events)
        for carrier, events in by_carrier.values():
            for start in range(0, len(events), self.flush_events):
                self._ingest_carrier(carrier, events[start : start + self.flush_events])
        self._ack(batch)

    def _ingest_carrier(self, carrier: Carrier, events: list[Any]) -> None:
        cache = self._caches.setdefault(carrier.pk, MissionCache())
        for attempt in range(1, INGEST_ATTEMPTS + 1):
            try:
                result = ingest_events(carrier=carrier, events=events, source="mqtt", cache=cache)
            except Exception:
                log.exception("MQTT batch ingest failed", extra={"carrier": carrier.slug, "attempt": attempt})
                _recycle_connection()
                time.sleep(min(2.0, 0.2 * attempt))
                continue
            self.stats["accepted"] += result.accepted
            self.stats["duplicates"] += result.duplicates
            self.stats["rejected"] += len(result.rejected)
            for rejected in result.rejected[:5]:
                log.info("MQTT event rejected", extra={"carrier": carrier.slug, "reason": rejected["reason"]})
            return
        self.stats["ingest_failed"] += len(events)

    def _ack(self, batch: list[_Message]) -> None:
        client = self._client
        if client is None:
            return
        for message in batch:
            if message.qos > 0:
                client.ack(message.mid, message.qos)

    def _malformed(self, kind: str, message: _Message, detail: str) -> None:
        self.stats[kind] += 1
        log.warning("MQTT message ignored", extra={"kind": kind, "topic": message.topic[:200], "detail": detail})

    def _parse(self, message: _Message) -> tuple[Carrier, list[Any]] | None:
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
            payload = json.loads(message.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._malformed("malformed_json", message, "payload is not UTF-8 JSON")
            return None
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            events = payload["events"]
        elif isinstance(payload, list):
            events = payload
        else:
            events = [payload]
        kept: list[Any] = []
        for event in events:
            if isinstance(event, dict):
                if "vehicle_id" not in event:
                    event = {**event, "vehicle_id": vehicle_id}
                elif event["vehicle_id"] != vehicle_id:
                    self._malformed("topic_mismatch", message, "vehicle_id does not match the topic")
                    continue
            kept.append(event)  # non-objects are rejected (and counted) by the validator
        return carrier, kept

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
