#!/usr/bin/env python
"""An example consumer of the TMS event bus: a durable JetStream pull consumer that dedupes on the CloudEvent id.

It needs only ``nats-py`` and the standard library (no TMS code), so a
downstream team can copy it. What it shows:

* **Durable pull consumer** (``--durable``) on the ``TMS_EVENTS`` stream,
  optionally filtered (``--subject 'tms.events.*.mission.>'``). The server
  remembers what the consumer acknowledged: a restart with the same durable
  name carries on where the last run stopped.
* **Explicit ack after handling.** A message not acknowledged within
  ``--ack-wait`` seconds (the consumer died, hung, lost its connection) is
  delivered again.
* **Dedupe on the CloudEvent ``id``.** Delivery is at least once: a
  redelivery after an ack timeout, a range replayed or published again past
  the stream's duplicate window, or a second durable reading the same
  events all repeat ids. The ids already handled are kept in a SQLite file
  (``--state``; the newest ``--remember`` of them) or, without it, in a
  bounded in-memory set (lost when the process stops). An id is recorded in
  the same SQLite transaction as the handling's own writes would be, and
  acknowledged only after that commit.
* **Clean exit** on SIGINT or SIGTERM (the batch in hand is finished and
  acknowledged first), after ``--max`` new events, or after ``--idle-exit``
  seconds without a message.

Each new event is printed as one line: stream sequence, id, type, subject,
time. Duplicates and undecodable messages are reported on stderr; a summary
line (``new=... duplicates=...``) is printed on stderr at the end.

    .venv/bin/python scripts/bus_consumer_example.py --url nats://127.0.0.1:4222 --durable billing
    .venv/bin/python scripts/bus_consumer_example.py --durable billing --state billing-seen.sqlite3 \\
        --subject 'tms.events.*.mission.>' --idle-exit 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "TMS_EVENTS"
DEFAULT_SUBJECT = "tms.events.>"
FETCH_TIMEOUT_SECONDS = 1.0  # how long one fetch waits; also how quickly a signal is noticed


class SeenIds(Protocol):
    def add_new(self, event_id: str) -> bool:
        """Record ``event_id``; False if it was already there (a duplicate)."""

    def commit(self) -> None: ...

    def close(self) -> None: ...


class MemorySeen:
    """The newest ``limit`` ids, in memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ids: OrderedDict[str, None] = OrderedDict()

    def add_new(self, event_id: str) -> bool:
        if event_id in self.ids:
            self.ids.move_to_end(event_id)
            return False
        self.ids[event_id] = None
        while len(self.ids) > self.limit:
            self.ids.popitem(last=False)
        return True

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteSeen:
    """The newest ``limit`` ids, in a SQLite file that survives restarts.

    A real consumer writes its own effects (an invoice line, a row in its
    warehouse) through this same connection, so the effect and the id commit
    together: a crash before the commit leaves neither, and the redelivery is
    handled afresh; a crash after it leaves both, and the redelivery is skipped.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.limit = limit
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE)")
        self.db.commit()

    def add_new(self, event_id: str) -> bool:
        return self.db.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", (event_id,)).rowcount == 1

    def commit(self) -> None:
        # Forget all but the newest ids: a repeat comes within the stream's retention, not years later.
        self.db.execute("DELETE FROM seen WHERE n <= (SELECT max(n) FROM seen) - ?", (self.limit,))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def handle(sequence: int, event: dict[str, Any]) -> None:
    """What this consumer does with a new event: here, print it. Replace with the real work."""
    print(sequence, event["id"], event.get("type", "-"), event.get("subject", "-"), event.get("time", "-"), flush=True)


async def consume(args: argparse.Namespace, seen: SeenIds, stop: asyncio.Event) -> tuple[int, int]:
    """Fetch, handle new events, ack; until stopped. The numbers of new and duplicate events."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(args.url, name=f"tms-consumer-{args.durable}", max_reconnect_attempts=-1)
    new = duplicates = 0
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            durable_name=args.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=args.ack_wait,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=max(args.batch * 4, 1000),
        )
        # Created on the first run; later runs bind to it and carry on from its acknowledged position.
        sub = await js.pull_subscribe(args.subject, durable=args.durable, stream=args.stream, config=config)
        idle_for = 0.0
        while not stop.is_set() and (args.max is None or new < args.max):
            want = args.batch if args.max is None else min(args.batch, args.max - new)
            try:
                messages = await sub.fetch(want, timeout=FETCH_TIMEOUT_SECONDS)
            except NatsTimeout:
                idle_for += FETCH_TIMEOUT_SECONDS
                if args.idle_exit is not None and idle_for >= args.idle_exit:
                    break
                continue
            idle_for = 0.0
            handled = []
            for message in messages:
                try:
                    event = json.loads(message.data)
                    event_id = str(event["id"])
                except (ValueError, KeyError, TypeError) as exc:
                    # Not a CloudEvent: retrying will not help; terminate it so it is not redelivered.
                    print(f"undecodable message at {message.metadata.sequence.stream}: {exc}", file=sys.stderr)
                    await message.term()
                    continue
                if seen.add_new(event_id):
                    handle(message.metadata.sequence.stream, event)
                    new += 1
                else:
                    print(f"duplicate {event_id} skipped", file=sys.stderr, flush=True)
                    duplicates += 1
                handled.append(message)
            seen.commit()  # the ids (and the handling's own writes) first ...
            for message in handled:
                await message.ack()  # ... then the acks: a crash in between means a redelivery, skipped
        await nc.flush()  # the acks are on the wire before the connection closes
    finally:
        await nc.close()
    return new, duplicates


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--url", default=os.environ.get("NATS_URL") or DEFAULT_URL, help="default: NATS_URL or %(default)s"
    )
    parser.add_argument("--stream", default=DEFAULT_STREAM, help="default: %(default)s")
    parser.add_argument("--durable", default="example", help="the durable consumer's name (default: %(default)s)")
    parser.add_argument("--subject", default=DEFAULT_SUBJECT, help="filter subject (default: %(default)s)")
    parser.add_argument("--state", type=Path, help="SQLite file of the ids handled (default: in memory only)")
    parser.add_argument("--remember", type=int, default=100_000, help="ids kept for dedupe (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="messages per fetch (default: %(default)s)")
    parser.add_argument(
        "--ack-wait", type=float, default=30.0, help="seconds before an unacknowledged message is redelivered"
    )
    parser.add_argument("--max", type=int, help="exit after this many new events")
    parser.add_argument("--idle-exit", type=float, help="exit after this many seconds without a message")
    args = parser.parse_args(argv)
    if args.max is not None and args.max < 1:
        parser.error("--max must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    seen: SeenIds = SqliteSeen(args.state, args.remember) if args.state else MemorySeen(args.remember)

    async def run() -> tuple[int, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await consume(args, seen, stop)

    try:
        new, duplicates = asyncio.run(run())
    finally:
        seen.close()
    print(f"new={new} duplicates={duplicates}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
