"""``manage.py onboarding_drift_check``: the drift watch now (the post-deploy step), smoke checks included."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from missions.onboarding.drift import drift_watch


class Command(BaseCommand):
    help = "Check every live carrier for drift (contract version, sandbox smoke check) now."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-smoke", action="store_true", help="Only compare certified contract versions.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = drift_watch(smoke=not options["no_smoke"], force=True)
        self.stdout.write(
            f"{result.checked} live carriers checked: {result.drifted} newly drifted, {result.paused} paused,"
            f" {result.cleared} cleared"
        )
