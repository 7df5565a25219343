"""``manage.py ota_refresh [--carrier SLUG]``: refresh the carriers' TUF metadata now (beat does it periodically)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.models import CarrierOtaRepository
from missions.ota.services import ota_repository_refresh


class Command(BaseCommand):
    help = "Refresh every configured TUF repository (or one carrier's) and print each outcome."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--carrier", default="", help="only this carrier's repositories (its slug)")

    def handle(self, *args: Any, **options: Any) -> None:
        repos = CarrierOtaRepository.objects.select_related("carrier").order_by("carrier__slug", "role")
        if options["carrier"]:
            repos = repos.filter(carrier__slug=options["carrier"])
            if not repos.exists():
                raise CommandError(f"No TUF repository configured for carrier {options['carrier']!r}.")
        failed = 0
        for repo in repos:
            repo = ota_repository_refresh(repository_id=repo.pk)
            name = f"{repo.carrier.slug}/{repo.role}"
            if repo.refresh_ok:
                self.stdout.write(f"{name}: ok, versions {repo.versions}, {len(repo.targets)} targets")
            else:
                failed += 1
                self.stdout.write(f"{name}: refused ({repo.failure_kind}): {repo.failure_reason}")
        if failed:
            raise CommandError(f"{failed} repositories failed to refresh.")
