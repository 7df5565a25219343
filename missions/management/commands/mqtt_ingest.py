"""``python manage.py mqtt_ingest``: the MQTT bridge process (see missions.telemetry.mqtt_bridge).

SIGTERM (or SIGINT) drains: no more messages are taken, the queued ones are
stored and acknowledged, the bridge disconnects, and the process exits within
``MQTT_DRAIN_SECONDS``. With a client id (``MQTT_CLIENT_ID``, the default) the
session is persistent, so what was not acknowledged goes to the next bridge.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.telemetry.mqtt_bridge import MqttBridge, broker_config
from tms_console import tracing
from tms_console.shutdown import EXIT_MARGIN_SECONDS, exit_deadline


class Command(BaseCommand):
    help = "Subscribe to <prefix>/<carrier_slug>/<vehicle_id> on MQTT_URL and ingest telemetry in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=settings.MQTT_URL, help="mqtt://host:1883 or mqtts://host:8883")
        parser.add_argument("--topic-prefix", default=settings.MQTT_TOPIC_PREFIX)
        parser.add_argument("--flush-ms", type=int, default=200, help="flush a batch at least this often")
        parser.add_argument("--flush-events", type=int, default=500, help="...or when this many messages wait")
        parser.add_argument(
            "--client-id",
            default=settings.MQTT_CLIENT_ID,
            help="fixed id + persistent session: what is not acknowledged at a stop or crash goes to the next bridge"
            " with this id; empty: a random id and a clean session",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.configure("mqtt-bridge")
        if not options["url"]:
            raise CommandError("MQTT_URL is not set (e.g. mqtt://127.0.0.1:1883); the MQTT bridge is off.")
        try:
            config = broker_config(
                options["url"],
                username=settings.MQTT_USERNAME,
                password=settings.MQTT_PASSWORD,
                ca_file=settings.MQTT_CA_FILE,
                client_cert=settings.MQTT_CLIENT_CERT_FILE,
                client_key=settings.MQTT_CLIENT_KEY_FILE,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        bridge = MqttBridge(
            config,
            topic_prefix=options["topic_prefix"],
            flush_seconds=options["flush_ms"] / 1000,
            flush_events=options["flush_events"],
            client_id=options["client_id"],
            persistent_session=bool(options["client_id"]),
        )
        stop = threading.Event()
        drain_seconds = float(settings.MQTT_DRAIN_SECONDS)

        def on_signal(*_: Any) -> None:
            stop.set()
            exit_deadline(drain_seconds, process="mqtt-bridge")

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        self.stdout.write(f"MQTT ingest: {config.host}:{config.port} topic {options['topic_prefix']}/+/+")
        bridge.run(stop, drain_seconds=max(0.0, drain_seconds - EXIT_MARGIN_SECONDS))
        self.stdout.write(f"MQTT ingest stopped: {dict(bridge.stats)}")
