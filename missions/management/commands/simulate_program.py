"""Drive the product through a simulated fleet's missions and check its SLA figures against ground truth.

    python manage.py simulate_program --days 30 --trucks 20 --seed 7 --profile default

Runs in this process: the product's services, Celery tasks (eager) and the SLA engine all see the
simulated clock. It never touches the configured database's data: the run gets a database of its own
next to it (``<name>_sim_<run>`` on PostgreSQL, a file in ``--out`` on SQLite), migrated, and dropped
afterwards unless ``--keep-db``; live-map broadcasts stay in the process and nothing is paged. Writes
``summary.json`` and ``report.html`` (offline) into ``--out`` and exits 1 when the comparison found a
mismatch.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.backends.sqlite3.creation import DatabaseCreation as SQLiteCreation
from django.test.utils import override_settings

from missions.simulation.profile import PROFILES, profile_get
from missions.simulation.program import run_program
from missions.simulation.report import reports_write
from missions.simulation.transport import TRANSPORTS
from missions.simulation.workers import TASKS


class Command(BaseCommand):
    help = "Simulate the program: a fleet's missions with faults in accelerated time, checked against ground truth."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=30.0)
        parser.add_argument("--trucks", type=int, default=20)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--profile", default="default", choices=sorted(PROFILES))
        parser.add_argument("--start", default="", help="ISO 8601 UTC start (default: the run ends on 2026-02-02)")
        parser.add_argument("--out", default="", help="directory for summary.json and report.html")
        parser.add_argument("--keep-db", action="store_true", help="keep the run's own database to inspect it")
        parser.add_argument(
            "--transport", default="inprocess", choices=TRANSPORTS,
            help="how the carriers reach the product: in this process; over HTTP to a partner server the run starts "
            "on its own clock file; or that server for their answers, and for their telemetry the WebSocket stream "
            "of a console process (ws) or MQTT_URL's broker and a bridge process (mqtt) of the run's own",
        )  # fmt: skip
        parser.add_argument(
            "--tasks", default="eager", choices=TASKS,
            help="where the product's Celery tasks and beat's work run: eagerly in this process, or in a worker "
            "process of the run's own on the configured broker (Redis or RabbitMQ), on the run's clock file",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] <= 0 or options["trucks"] <= 0:
            raise CommandError("--days and --trucks must be positive.")
        start = None
        if options["start"]:
            try:
                start = datetime.fromisoformat(options["start"].replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--start: {exc}") from None
            if start.tzinfo is None:
                raise CommandError("--start needs an offset (UTC), e.g. 2026-01-03T00:00:00Z.")
        profile = profile_get(options["profile"])
        # Every run creates its own carriers: a fresh prefix lets runs share a database.
        prefix = f"sim{options['seed']}{secrets.token_hex(2)}"
        out = Path(options["out"] or Path(settings.VAR_DIR) / "simulations" / prefix)

        def progress(p: dict[str, Any]) -> None:
            self.stdout.write(
                f"sim day {p['sim_day']} ({p['sim_time']}): {p['events']} telemetry events, "
                f"{p['missions']} missions, {p['wall_seconds']} s wall"
            )

        out.mkdir(parents=True, exist_ok=True)
        # Thousands of eager tasks a simulated day: their trace lines would bury the progress.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        with _own_database(prefix, out, keep=options["keep_db"]) as name:
            self.stdout.write(f"simulating in its own database: {name}")
            result = run_program(
                days=options["days"], trucks=options["trucks"], seed=options["seed"], profile=profile, start=start,
                prefix=prefix, progress=progress, transport=options["transport"], out=out, tasks=options["tasks"],
            )  # fmt: skip
        json_path, html_path = reports_write(result, out)
        comparison = result.comparison
        self.stdout.write(
            f"{len(result.record.missions)} missions, {len(result.record.incidents)} incidents, "
            f"{len(comparison.rows)} SLI figures compared, {len(comparison.credits)} credits checked "
            f"in {result.wall_seconds:.1f} s wall"
        )
        self.stdout.write(f"summary: {json_path}\nreport: {html_path}")
        if not comparison.passed:
            for m in comparison.mismatches[:20]:
                self.stderr.write(f"MISMATCH {m}")
            raise CommandError(f"ground-truth comparison failed: {len(comparison.mismatches)} mismatches")
        self.stdout.write(self.style.SUCCESS("ground-truth comparison passed"))


@contextmanager
def _own_database(run: str, out: Path, *, keep: bool) -> Iterator[str]:
    """A migrated database for this run only, beside the configured one; dropped afterwards unless ``keep``.

    Live-map broadcasts go to an in-process channel layer, so a console running on the same Redis does not
    draw the simulated trucks.
    """
    old_name = connection.settings_dict["NAME"]
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    if isinstance(connection.creation, SQLiteCreation) and connection.creation.is_in_memory_db(old_name):
        # An in-memory database (a test run's) is thrown away anyway, and SQLite cannot leave it open.
        with override_settings(CHANNEL_LAYERS=layers):
            yield "the in-memory database"
        return
    name = str(out / "simulation.sqlite3") if connection.vendor == "sqlite" else f"{old_name}_sim_{run}"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    created = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        with override_settings(CHANNEL_LAYERS=layers):
            yield created
    finally:
        if keep:
            connection.close()
            connection.settings_dict["NAME"] = old_name
        else:
            connection.creation.destroy_test_db(old_name, verbosity=0)
