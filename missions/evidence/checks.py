"""``manage.py check``: warn when production has no evidence signing key (attestations are skipped)."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.checks import CheckMessage, Tags
from django.core.checks import Warning as CheckWarning

from missions.evidence.keys import KeyLoadError, signer_from_settings
from missions.evidence.signing import dev_keys_allowed, key_configured


def register() -> None:
    """Called from ``MissionsConfig.ready``."""
    checks.register(evidence_key_check, Tags.security)


def evidence_key_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not key_configured():
        if dev_keys_allowed():
            return []
        return [
            CheckWarning(
                "No evidence signing key is configured: attestations and checkpoints are skipped.",
                hint="Create one with `manage.py evidence_keygen --out DIR` and set EVIDENCE_SIGNING_KEY_FILE.",
                id="evidence.W001",
            )
        ]
    try:
        signer_from_settings()
    except (KeyLoadError, OSError) as exc:
        return [
            CheckWarning(
                f"The evidence signing key cannot be loaded ({exc}): attestations are skipped.",
                id="evidence.W002",
            )
        ]
    return []
