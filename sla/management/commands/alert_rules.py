"""``python manage.py alert_rules [--check]``: write (or check) the SLO burn-rate rules for Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sla.alert_rules import rules_text

DEFAULT_PATH = Path("deploy") / "prometheus" / "rules" / "slo.rules.yaml"


class Command(BaseCommand):
    help = "Write the SLO burn-rate recording and alerting rules (--check: fail if the file differs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", default=str(Path(settings.BASE_DIR) / DEFAULT_PATH))
        parser.add_argument("--check", action="store_true", help="write nothing; exit non-zero if the file differs")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["output"])
        text = rules_text()
        current = path.read_text() if path.exists() else None
        if options["check"]:
            if current != text:
                raise CommandError(f"{path} is out of date: run `python manage.py alert_rules`")
            self.stdout.write(f"{path} is up to date")
            return
        if current == text:
            self.stdout.write(f"{path} unchanged")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.stdout.write(f"{path} written")
