"""The console's evidence signing key and published key ring, resolved from settings.

* ``EVIDENCE_SIGNING_KEY`` (env) or ``EVIDENCE_SIGNING_KEY_FILE`` (setting or env): the key.
* DEBUG or tests without one: an ephemeral development key is created once under
  ``VAR_DIR/keys/`` (git-ignored) with a warning. Never use it for real evidence.
* Production without one: ``evidence_signer()`` returns None, attestations are skipped with an
  error log, and ``manage.py check`` warns (``missions.evidence.checks``). The console runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from django.conf import settings

from missions.evidence.keys import (
    ENV_SIGNING_KEY,
    Ed25519Signer,
    KeyLoadError,
    KeyRing,
    Signer,
    keyring_from_settings,
    signer_from_settings,
)

log = logging.getLogger(__name__)

DEFAULT_ORIGIN = "tms-console.example/evidence"
DEV_KEY_NAME = "evidence-dev.key.pem"

_lock = threading.Lock()
_cache: dict[tuple[str, str, str], Signer | None] = {}


def log_origin() -> str:
    return str(getattr(settings, "EVIDENCE_LOG_ORIGIN", "") or DEFAULT_ORIGIN)


def key_configured() -> bool:
    return bool(os.environ.get(ENV_SIGNING_KEY, "").strip() or _key_file())


def _key_file() -> str:
    return str(getattr(settings, "EVIDENCE_SIGNING_KEY_FILE", "") or os.environ.get("EVIDENCE_SIGNING_KEY_FILE", ""))


def dev_keys_allowed() -> bool:
    return bool(settings.DEBUG or getattr(settings, "TESTING", False))


def _dev_signer() -> Ed25519Signer:
    """Load or create the development key; safe when several processes start at once."""
    directory = Path(getattr(settings, "VAR_DIR", Path(settings.BASE_DIR) / "var")) / "keys"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / DEV_KEY_NAME
    if not path.exists():
        signer = Ed25519Signer.generate()
        # Write a private temp file, then link it into place: link fails if another process won
        # the race, and nobody ever reads a half-written key.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".evidence-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(signer.private_pem())
            try:
                os.link(tmp, path)
                log.warning(
                    "created an ephemeral development evidence key %s at %s; set EVIDENCE_SIGNING_KEY_FILE "
                    "for real evidence",
                    signer.key_id,
                    path,
                    extra={"event": "evidence.dev_key_created"},
                )
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return Ed25519Signer.from_pem_file(path)


def evidence_signer() -> Signer | None:
    """The signing key, or None (production without a key: attestations are skipped)."""
    cache_key = (os.environ.get(ENV_SIGNING_KEY, ""), _key_file(), str(getattr(settings, "VAR_DIR", "")))
    with _lock:
        if cache_key in _cache:
            return _cache[cache_key]
        signer: Signer | None
        if key_configured():
            try:
                signer = signer_from_settings()
            except (KeyLoadError, OSError) as exc:
                log.error("evidence signing key cannot be loaded: %s", exc, extra={"event": "evidence.key_error"})
                signer = None
        elif dev_keys_allowed():
            signer = _dev_signer()
            log.warning(
                "no evidence signing key configured: using the development key %s",
                signer.key_id,
                extra={"event": "evidence.dev_key"},
            )
        else:
            log.error(
                "no evidence signing key configured (EVIDENCE_SIGNING_KEY / EVIDENCE_SIGNING_KEY_FILE): "
                "attestations are skipped",
                extra={"event": "evidence.no_key"},
            )
            signer = None
        _cache[cache_key] = signer
        return signer


def evidence_signer_reset() -> None:
    """Forget the loaded key (tests, or after rotating the key file in place)."""
    with _lock:
        _cache.clear()


def evidence_keyring() -> KeyRing:
    """Every published public key (old ones after rotation too) plus the current signer's."""
    try:
        return keyring_from_settings(evidence_signer())
    except KeyLoadError as exc:
        log.error("published evidence keys cannot be loaded: %s", exc, extra={"event": "evidence.keyring_error"})
        signer = evidence_signer()
        return KeyRing([signer.public_key_bytes] if signer else [])
