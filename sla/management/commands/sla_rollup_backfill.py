"""Build the SLA buckets for the rows already stored (resumable: every batch commits its progress).

With no bucket built yet, a set-based first build (``sla.rollup_build``) does the
stored rows in mission chunks; the incremental rollup then applies what came
after it. With buckets already built, only the incremental rollup runs.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from sla import rollup_build, rollups
from sla.models import RollupCursor


class Command(BaseCommand):
    help = "Apply every stored mission, event, telemetry sample and outbound call to the SLA buckets, with progress."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rebuild", help="Drop and rebuild one carrier's buckets (carrier id)")
        parser.add_argument("--max-seconds", type=float, default=0, help="Stop after this long (0: until done)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rebuild"]:
            n = rollups.carrier_rebuild(int(options["rebuild"]))
            self.stdout.write(f"carrier {options['rebuild']}: {n:,} missions recomputed, calls re-applied")
            return
        started = time.monotonic()
        limit = options["max_seconds"] or float("inf")

        def say(line: str) -> None:
            self.stdout.write(f"[{time.monotonic() - started:6.1f} s] {line}")
            self.stdout.flush()

        if not rollup_build.build(max_seconds=limit, progress=say):
            say(f"first build stopped, {rollup_build.left().get('missions', 0):,} missions left; run again to resume")
            return
        while time.monotonic() - started < limit:
            applied = rollups.rollup_run(max_seconds=min(30.0, limit - (time.monotonic() - started)))
            lag = rollups.rollup_lag()
            positions = dict(RollupCursor.objects.values_list("name", "position"))
            say(", ".join(f"{name} at {positions.get(name, 0):,} ({lag.get(name, 0):,} left)" for name in lag))
            if not any(applied.values()) or not any(lag.values()):
                break
        self.stdout.write("caught up" if not any(rollups.rollup_lag().values()) else "stopped; run again to resume")
