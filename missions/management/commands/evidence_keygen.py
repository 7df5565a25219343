"""``manage.py evidence_keygen --out DIR``: create an Ed25519 evidence signing key pair.

Writes ``evidence-<key id>.key.pem`` (PKCS#8, mode 0600) and ``evidence-<key id>.pub.pem``
(SubjectPublicKeyInfo). The private key belongs in a secret store or a protected path named by
EVIDENCE_SIGNING_KEY_FILE, never in the database or the repository, so directories inside the
project tree are refused unless they are ignored by git (``var/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.evidence.keys import Ed25519Signer
from missions.evidence.note import verifier_key_format


class Command(BaseCommand):
    help = "Create a new Ed25519 evidence signing key (private key 0600) and its public key file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="directory for the key files (created if missing)")
        parser.add_argument(
            "--log-origin",
            default=getattr(settings, "EVIDENCE_LOG_ORIGIN", "tms-console.example/evidence"),
            help="log origin, used to print the signed-note verifier key",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"]).expanduser().resolve()
        base = Path(settings.BASE_DIR).resolve()
        var_dir = Path(getattr(settings, "VAR_DIR", base / "var")).resolve()
        if out.is_relative_to(base) and not out.is_relative_to(var_dir):
            raise CommandError(
                f"refusing to write a private key inside the project tree ({out}); use a path outside it"
            )
        out.mkdir(parents=True, exist_ok=True)
        signer = Ed25519Signer.generate()
        private_path = out / f"evidence-{signer.key_id}.key.pem"
        public_path = out / f"evidence-{signer.key_id}.pub.pem"
        if private_path.exists() or public_path.exists():
            raise CommandError(f"{private_path} already exists")
        # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signer.private_pem())
        public_path.write_bytes(signer.public_pem())
        public_path.chmod(0o644)
        self.stdout.write(f"key id:          {signer.key_id}")
        self.stdout.write(f"private key:     {private_path} (0600; set EVIDENCE_SIGNING_KEY_FILE to it)")
        self.stdout.write(f"public key:      {public_path} (publish it; keep it after rotation)")
        self.stdout.write(f"note verifier:   {verifier_key_format(options['log_origin'], signer.public_key_bytes)}")
