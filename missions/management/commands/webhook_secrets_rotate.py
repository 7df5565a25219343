"""``manage.py webhook_secrets_rotate``: rotate the carriers' webhook signing secrets that are due.

Non-interactive, for a scheduled job (deploy/k8s/base/rotation-cronjob.yaml): every carrier whose
newest valid secret is older than ``--older-than-days`` gets a new one through
``missions.partner.services.webhook_secret_rotate``; its old secrets stay valid for the overlap
(``--overlap-hours``, by default WEBHOOK_ROTATION_OVERLAP_HOURS), then lapse. The new secret is
never printed: the output names the carrier, the new secret's id and when the old one lapses.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from missions.events import Actor
from missions.partner.selectors import webhook_secrets_due
from missions.partner.services import webhook_secret_rotate

ACTOR_LABEL = "webhook-secret-rotation"


class Command(BaseCommand):
    help = "Rotate every carrier webhook secret older than --older-than-days (the old one overlaps, then lapses)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than-days", type=int, required=True, help="rotate secrets issued before this")
        parser.add_argument("--overlap-hours", type=int, default=None, help="default: WEBHOOK_ROTATION_OVERLAP_HOURS")
        parser.add_argument("--carrier", action="append", default=[], help="only this carrier slug (repeatable)")
        parser.add_argument("--dry-run", action="store_true", help="list the carriers that are due, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["older_than_days"]
        if days < 1:
            raise CommandError("--older-than-days must be at least 1")
        now = timezone.now()
        due = webhook_secrets_due(issued_before=now - timedelta(days=days), now=now, slugs=options["carrier"])
        if options["dry_run"]:
            for carrier in due:
                self.stdout.write(f"due: {carrier.slug}")
            self.stdout.write(f"{len(due)} carrier(s) due, nothing rotated (--dry-run)")
            return
        actor = Actor.system(ACTOR_LABEL)
        for carrier in due:
            secret = webhook_secret_rotate(carrier_id=carrier.pk, actor=actor, overlap_hours=options["overlap_hours"])
            self.stdout.write(f"rotated: {carrier.slug} new secret id {secret.pk}")
        self.stdout.write(f"{len(due)} carrier(s) rotated")
