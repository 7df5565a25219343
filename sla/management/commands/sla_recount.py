"""Recount a carrier's SLIs from raw rows and report any drift from the buckets (exit 1 on drift)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from missions.models import Carrier
from sla import rollups
from sla.recount import default_windows, drift_check_all, drift_find
from sla.sli import Window


class Command(BaseCommand):
    help = "Recount SLIs from raw rows and compare with the SLA buckets; --all is the daily check (incident on drift)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--carrier", help="Carrier slug or id (default: every carrier with a contract)")
        parser.add_argument("--start", help="Window start, ISO 8601 (default: every evaluation window at --now)")
        parser.add_argument("--end", help="Window end, ISO 8601")
        parser.add_argument("--now", help="Evaluation instant, ISO 8601 (default: now)")
        parser.add_argument("--repair", action="store_true", help="Rebuild the buckets of a carrier that drifted")
        parser.add_argument("--alert", action="store_true", help="Open an incident per drifting carrier (daily run)")

    def handle(self, *args: Any, **options: Any) -> None:
        now = datetime.fromisoformat(options["now"]) if options["now"] else timezone.now()
        if options["alert"]:
            found = drift_check_all(now=now, repair=options["repair"])
            self.stdout.write(f"drift: {len(found)} carrier(s)")
            if found:
                raise SystemExit(1)
            return
        if options["start"] and options["end"]:
            windows = [
                Window("custom", datetime.fromisoformat(options["start"]), datetime.fromisoformat(options["end"]))
            ]
        else:
            windows = default_windows(now)
        if options["carrier"]:
            value = options["carrier"]
            carrier = Carrier.objects.filter(pk=int(value)).first() if value.isdigit() else None
            carrier = carrier or Carrier.objects.filter(slug=value).first()
            if carrier is None:
                raise CommandError(f"No carrier {value!r}.")
            carriers = [carrier]
        else:
            carriers = list(Carrier.objects.filter(contracts__isnull=False).distinct().order_by("pk"))
        drifted = 0
        for carrier in carriers:
            drift = drift_find(carrier.pk, windows)
            if drift.clean:
                self.stdout.write(f"{carrier.slug}: drift 0 over {len(windows)} window(s)")
                continue
            drifted += 1
            self.stdout.write(f"{carrier.slug}: {len(drift.differences)} difference(s)")
            for d in drift.differences:
                self.stdout.write(f"  {d}")
            if options["repair"]:
                rollups.carrier_rebuild(carrier.pk)
                self.stdout.write(f"  rebuilt; drift now {len(drift_find(carrier.pk, windows).differences)}")
        if drifted and not options["repair"]:
            raise SystemExit(1)
