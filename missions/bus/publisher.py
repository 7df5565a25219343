"""Publishing to the bus: a small interface, and its NATS JetStream implementation.

The relay (``missions.bus.relay``) sees only ``Publisher``: streams made sure
of at start, a batch of messages published in order with all their acks
awaited, the largest message the bus takes. Another broker (Kafka) would be
another implementation of it.

``NatsPublisher`` keeps one connection and its own event loop (the relay is
synchronous: it reads the database between publishes). It does not reconnect
in the background: a lost connection fails the batch, the relay backs off and
``publish`` connects again, so a batch is either acknowledged whole or
retried whole (JetStream drops the repeats by ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Room left in a message for the headers (Nats-Msg-Id, the expected stream) and the protocol line.
HEADER_ALLOWANCE = 512


class PublishError(Exception):
    """The bus did not acknowledge the batch (down, timed out, refused): retry it."""


@dataclass(frozen=True)
class Outgoing:
    subject: str
    payload: bytes
    message_id: str  # the Nats-Msg-Id: JetStream drops a repeat inside its duplicate window


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    max_age_seconds: float
    max_bytes: int
    duplicate_window_seconds: float


class Publisher(Protocol):
    def ensure_streams(self, streams: Sequence[StreamSpec]) -> None: ...

    def publish(self, stream: str, messages: Sequence[Outgoing]) -> list[int]: ...

    def max_payload(self) -> int: ...

    def close(self) -> None: ...


class NatsPublisher:
    """JetStream over nats-py, driven synchronously."""

    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None
        self._js: Any = None

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def _connected(self) -> Any:
        if self._nc is not None and self._nc.is_connected:
            return self._js
        self._drop()
        import nats

        try:
            self._nc = self._run(
                nats.connect(
                    self.url,
                    allow_reconnect=False,
                    connect_timeout=min(self.timeout_seconds, 5.0),
                    # nats-py retries the first connect 60 times, 2 s apart, unless told otherwise: the
                    # relay has its own backoff and must say "down" at once.
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.2,
                    error_cb=_connection_error,
                    name="tms-events-relay",
                )
            )
        except Exception as exc:
            self._nc = None
            raise PublishError(f"cannot connect to NATS at {safe_url(self.url)}: {type(exc).__name__}: {exc}") from exc
        self._js = self._nc.jetstream(timeout=self.timeout_seconds)
        return self._js

    def _drop(self) -> None:
        if self._nc is not None:
            try:
                self._run(self._nc.close())
            except Exception:  # already broken: nothing more to close
                log.debug("closing a broken NATS connection failed", exc_info=True)
        self._nc = None
        self._js = None

    def ensure_streams(self, streams: Sequence[StreamSpec]) -> None:
        """Create each stream, or bring an existing one to this configuration (idempotent)."""
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError

        js = self._connected()
        for spec in streams:
            config = StreamConfig(
                name=spec.name,
                subjects=spec.subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                max_age=spec.max_age_seconds,
                max_bytes=spec.max_bytes,
                duplicate_window=spec.duplicate_window_seconds,
            )
            try:
                try:
                    self._run(js.stream_info(spec.name))
                except NotFoundError:
                    self._run(js.add_stream(config))
                    log.info("bus stream created", extra={"stream": spec.name, "subjects": spec.subjects})
                else:
                    self._run(js.update_stream(config))
            except BadRequestError as exc:
                raise PublishError(f"stream {spec.name} cannot take this configuration: {exc}") from exc
            except Exception as exc:
                self._drop()
                raise PublishError(f"stream {spec.name}: {type(exc).__name__}: {exc}") from exc

    def max_payload(self) -> int:
        self._connected()
        return int(self._nc.max_payload) - HEADER_ALLOWANCE

    def publish(self, stream: str, messages: Sequence[Outgoing]) -> list[int]:
        """Publish in order and wait for every ack; the stream sequences, or PublishError."""
        if not messages:
            return []
        js = self._connected()
        try:
            return list(self._run(self._publish(js, stream, messages)))
        except PublishError:
            raise
        except Exception as exc:
            self._drop()
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc

    async def _publish(self, js: Any, stream: str, messages: Sequence[Outgoing]) -> list[int]:
        # Each publish is written to the connection before the next (order kept); the acks are awaited together.
        futures = [
            await js.publish_async(m.subject, m.payload, stream=stream, headers={"Nats-Msg-Id": m.message_id})
            for m in messages
        ]
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=self.timeout_seconds)
        return [int(ack.seq) for ack in acks]

    def close(self) -> None:
        self._drop()
        self._loop.close()


async def _connection_error(exc: Exception) -> None:
    # nats-py reports each failed attempt with a traceback; the relay logs one line per state change.
    log.debug("NATS connection error: %s", exc)


def safe_url(url: str) -> str:
    """The URL without its credentials, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]
