"""Deterministic demo secrets: TOTP keys for the demo users, credentials for the carrier simulator.

Derived from ``SECRET_KEY`` with HMAC-SHA256 so that re-seeding keeps the
same secrets (an authenticator app set up once keeps working) while two
installations with different keys never share them. Demo only: real users
enroll through the two-factor setup wizard with a random key.
"""

from __future__ import annotations

import hashlib
import hmac
from base64 import b32encode, b64encode
from binascii import unhexlify

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

DEFAULT_DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed by seed_demo; only accepted with DEBUG on
DEFAULT_CARRIER_SIM_URL = "http://127.0.0.1:8100"


def _derive(purpose: str, subject: str, length: int) -> bytes:
    message = f"tms-demo:{purpose}:{subject}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()[:length]


def demo_totp_key(username: str) -> str:
    """The 20-byte TOTP key (hex, the form ``TOTPDevice.key`` stores) for a demo user."""
    return _derive("totp", username, 20).hex()


def totp_key_base32(hex_key: str) -> str:
    """The key as an authenticator app takes it (RFC 4648 base32, no padding)."""
    return b32encode(unhexlify(hex_key)).decode("ascii").rstrip("=")


def totp_current_code(device: TOTPDevice) -> str:
    """The code the device's authenticator app shows right now, zero-padded."""
    value = totp(unhexlify(device.key), step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
    return str(value).zfill(device.digits)


def demo_password(environ: dict[str, str]) -> str:
    """``DEMO_PASSWORD`` from the environment; the well-known default only while DEBUG is on."""
    password = environ.get("DEMO_PASSWORD", "")
    if password:
        return password
    if settings.DEBUG:
        return DEFAULT_DEMO_PASSWORD
    raise ImproperlyConfigured("Set DEMO_PASSWORD: the default demo password is only allowed with DEBUG=1.")


def carrier_sim_client_secret(client_id: str) -> str:
    """OAuth2 client secret the carrier simulator expects from us for ``client_id``.

    The simulator runs from the same settings, so it derives the same value.
    """
    return _derive("carrier-sim-secret", client_id, 24).hex()


def demo_sandbox_credentials(slug: str) -> tuple[str, str, str]:
    """The demo onboarding carrier's sandbox credentials for the console's API: (client id, client secret,
    webhook secret). The seed registers them and the simulator's sandbox for ``slug`` uses them."""
    client_id = f"sandbox-{slug}"
    secret = _derive("sandbox-client-secret", slug, 24).hex()
    webhook = "whsec_" + b64encode(_derive("sandbox-webhook-secret", slug, 24)).decode("ascii")
    return client_id, secret, webhook
