"""``manage.py verify_evidence FILE``: verify an evidence bundle offline, through the library.

Trusted keys: ``--trusted-keys`` paths, else the published key ring (EVIDENCE_PUBLIC_KEYS_DIR,
EVIDENCE_PUBLIC_KEYS), else the keys carried in the bundle (integrity only, with a warning).
Exits non-zero naming every failed check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.evidence.bundle import bundle_verify
from missions.evidence.keys import KeyLoadError, KeyRing, keyring_from_settings


class Command(BaseCommand):
    help = "Verify an evidence bundle: signatures, log inclusion, checkpoint and snapshots."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="evidence bundle (JSON)")
        parser.add_argument("--trusted-keys", action="append", default=[], metavar="PATH")
        parser.add_argument("--bundle-keys", action="store_true", help="trust the keys inside the bundle")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = Path(options["file"]).read_bytes()
            trusted: KeyRing | None
            if options["trusted_keys"]:
                trusted = KeyRing()
                trusted.add_paths(options["trusted_keys"])
            elif options["bundle_keys"]:
                trusted = None
            else:
                ring = keyring_from_settings()
                trusted = ring if len(ring) else None
        except (OSError, ValueError, KeyLoadError) as exc:
            raise CommandError(str(exc)) from exc
        report = bundle_verify(data, trusted)
        if not report.ok:
            raise CommandError(report.summary())
        self.stdout.write(report.summary())
