"""Reading the bus back: replay from a stream sequence or a time, for ``manage.py events_replay`` and tests.

An ephemeral pull consumer (no state left on the server once it is idle)
with explicit acks reads the stream in order; each message comes back with
its stream sequence and its CloudEvent decoded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FETCH_BATCH = 256


async def _connection_error(exc: Exception) -> None:
    """nats-py's default logs a traceback per attempt; the caller reports the failure once."""


@dataclass(frozen=True)
class Replayed:
    sequence: int
    subject: str
    event: dict[str, Any]


def replay(
    url: str,
    *,
    stream: str,
    subject: str = ">",
    from_sequence: int | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    idle_seconds: float = 1.0,
) -> Iterator[Replayed]:
    """The stream's messages from a sequence or a time (default: the first), until ``limit`` or none come."""
    loop = asyncio.new_event_loop()
    try:
        messages = loop.run_until_complete(_read(url, stream, subject, from_sequence, since, limit, idle_seconds))
    finally:
        loop.close()
    yield from messages


async def _read(
    url: str,
    stream: str,
    subject: str,
    from_sequence: int | None,
    since: datetime | None,
    limit: int | None,
    idle_seconds: float,
) -> list[Replayed]:
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(
        url,
        allow_reconnect=False,
        connect_timeout=5,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.2,
        error_cb=_connection_error,
    )
    try:
        js = nc.jetstream(timeout=15.0)  # the consumer is created by an API call: room for a busy server
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, inactive_threshold=30.0)
        if from_sequence is not None:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, max(from_sequence, 1)
        elif since is not None:
            config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, since
        else:
            config.deliver_policy = DeliverPolicy.ALL
        filter_subject = subject if subject != ">" else None
        sub = await js.pull_subscribe(filter_subject or "", stream=stream, config=config)
        out: list[Replayed] = []
        while limit is None or len(out) < limit:
            want = FETCH_BATCH if limit is None else min(FETCH_BATCH, limit - len(out))
            try:
                batch = await sub.fetch(want, timeout=idle_seconds)
            except (TimeoutError, NatsTimeout):
                break  # nothing more within the idle time
            for msg in batch:
                out.append(Replayed(msg.metadata.sequence.stream, msg.subject, json.loads(msg.data)))
                await msg.ack()
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()
