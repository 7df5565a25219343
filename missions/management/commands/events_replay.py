"""``python manage.py events_replay``: print a bus stream's CloudEvents from a sequence or a time, one JSON per line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.bus.publisher import safe_url
from missions.bus.reader import replay


class Command(BaseCommand):
    help = "Replay the event bus (NATS_URL): CloudEvents as JSON lines with their stream sequence."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=settings.NATS_URL, help="nats://host:4222 (default: NATS_URL)")
        parser.add_argument("--stream", choices=["events", "telemetry"], default="events")
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--from-seq", type=int, help="the first stream sequence to print (1 = the beginning)")
        start.add_argument("--since", help="the first time to print, ISO 8601 with a zone (2026-12-06T08:00:00Z)")
        parser.add_argument(
            "--subject", default=">", help="a subject filter, e.g. 'tms.events.*.mission.>' (default: all)"
        )
        parser.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000; 0: no limit)")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"]
        if not url:
            raise CommandError("NATS_URL is not set (e.g. nats://127.0.0.1:4222); the event bus is off.")
        since = None
        if options["since"]:
            try:
                since = datetime.fromisoformat(options["since"].replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--since: not an ISO 8601 time: {options['since']!r}") from exc
            if since.tzinfo is None:
                raise CommandError("--since needs a time zone (e.g. a trailing Z for UTC).")
        if options["from_seq"] is not None and options["from_seq"] < 1:
            raise CommandError("--from-seq starts at 1.")
        if options["limit"] < 0:
            raise CommandError("--limit cannot be negative.")
        stream = settings.BUS_EVENTS_STREAM if options["stream"] == "events" else settings.BUS_TELEMETRY_STREAM
        try:
            messages = replay(
                url,
                stream=stream,
                subject=options["subject"],
                from_sequence=options["from_seq"],
                since=since,
                limit=options["limit"] or None,
            )
            count = 0
            for message in messages:
                self.stdout.write(
                    json.dumps({"sequence": message.sequence, "nats_subject": message.subject, **message.event})
                )
                count += 1
        except (
            Exception
        ) as exc:  # a clear line, not a traceback, for a server that is down or a stream that is not there
            raise CommandError(f"cannot replay {stream} from {safe_url(url)}: {type(exc).__name__}: {exc}") from exc
        self.stderr.write(f"{count} message(s) from {stream}")
