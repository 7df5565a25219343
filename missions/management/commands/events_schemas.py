"""``python manage.py events_schemas [--check]``: write (or check) the bus's JSON Schemas under docs/events/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.bus.types import (
    EVENT_ACTIONS,
    TELEMETRY_TYPE,
    cloudevent_type,
    event_schema,
    schema_file_name,
    telemetry_schema,
)


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every event type and the telemetry batch."""
    documents = {schema_file_name(cloudevent_type(action)): event_schema(action) for action in sorted(EVENT_ACTIONS)}
    documents[schema_file_name(TELEMETRY_TYPE)] = telemetry_schema()
    return documents


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


class Command(BaseCommand):
    help = "Write the CloudEvents JSON Schemas of the event bus to docs/events/ (--check: fail if they differ)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", default=str(Path(settings.BASE_DIR) / "docs" / "events"))
        parser.add_argument("--check", action="store_true", help="write nothing; exit non-zero if a file differs")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(options["dir"])
        documents = schema_documents()
        stale = [name for name, schema in documents.items() if not _same(directory / name, render(schema))]
        extra = (
            sorted(p.name for p in directory.glob("*.schema.json") if p.name not in documents)
            if directory.exists()
            else []
        )
        if options["check"]:
            if stale or extra:
                raise CommandError(f"docs/events is out of date: differs {stale}, not an event type {extra}")
            self.stdout.write(f"{len(documents)} schemas up to date")
            return
        directory.mkdir(parents=True, exist_ok=True)
        for name in stale:
            (directory / name).write_text(render(documents[name]))
        for name in extra:
            (directory / name).unlink()
        self.stdout.write(f"{len(stale)} written, {len(extra)} removed, {len(documents)} in all")


def _same(path: Path, text: str) -> bool:
    return path.exists() and path.read_text() == text
