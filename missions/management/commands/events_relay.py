"""``python manage.py events_relay``: the event record and telemetry samples onto NATS JetStream.

Off unless ``NATS_URL`` is set (``make run`` starts it then). SIGTERM or
SIGINT: the round in flight finishes (its acks or its failure), the lease is
released and the process exits. A kill at any moment loses nothing: the
cursor moves only after the acks (see ``missions.bus.relay``).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.bus.publisher import NatsPublisher, safe_url
from missions.bus.relay import Relay
from tms_console import tracing
from tms_console.shutdown import exit_deadline

# The round in flight waits at most its publish timeout; then the process goes.
DRAIN_SECONDS = 12.0


class Command(BaseCommand):
    help = "Relay the event record and telemetry samples, in order, to NATS JetStream (NATS_URL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=settings.NATS_URL, help="nats://host:4222 (default: NATS_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.configure("events-relay")
        url = options["url"]
        if not url:
            raise CommandError("NATS_URL is not set (e.g. nats://127.0.0.1:4222); the event bus is off.")
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise CommandError(f"NATS_URL must be nats://, tls://, ws:// or wss://, not {safe_url(url)!r}.")
        publisher = NatsPublisher(url)
        relay = Relay(publisher)
        stop = threading.Event()

        def on_signal(*_: Any) -> None:
            stop.set()
            exit_deadline(DRAIN_SECONDS, process="events-relay")

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        self.stdout.write(
            f"Event bus relay: {safe_url(url)} streams {settings.BUS_EVENTS_STREAM}, {settings.BUS_TELEMETRY_STREAM}"
        )
        try:
            relay.run(stop)
        finally:
            publisher.close()
        self.stdout.write("Event bus relay stopped.")
