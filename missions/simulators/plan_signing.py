"""A carrier's side of signed route plans: a key pair, the plan's bytes, a cosign-style signature, the envelope.

``blob_sign`` signs like ``cosign sign-blob --key cosign.key``: ECDSA P-256 over
SHA-256 of the exact bytes, ASN.1 DER, standard base64. ``cosign verify-blob
--key cosign.pub --signature plan.sig plan.json`` accepts what it makes (for
an unencrypted PKCS#8 key; cosign's own keys are encrypted with a password,
which ``blob_sign`` takes too). The carrier simulator and the tests use it;
the console never signs plans.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PLAN_TYPE = "tms.route_plan.v1"


@dataclass(frozen=True)
class KeyPair:
    """A plan-signing key: the private key in PKCS#8 PEM (kept by the carrier), the public key to register."""

    private_pem: bytes
    public_pem: str


def key_pair_generate() -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem.decode())


def blob_sign(private_pem: bytes, data: bytes, *, password: bytes | None = None) -> str:
    """base64 DER ECDSA P-256 signature over SHA-256 of ``data`` (``cosign sign-blob --key``'s output)."""
    key = serialization.load_pem_private_key(private_pem, password=password)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a plan-signing key is an ECDSA P-256 private key")
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def _instant(value: datetime | str) -> str:
    # A string is sent as is (a test of what the console refuses).
    return value if isinstance(value, str) else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_bytes(
    *,
    mission_id: int,
    version: int,
    valid_from: datetime | str,
    valid_until: datetime | str,
    waypoints: Sequence[Sequence[Any]],
    **extra: Any,
) -> bytes:
    """A route plan document as UTF-8 JSON: the bytes that get signed (``extra`` adds or overrides members).

    Waypoints are ``[lat, lon]`` in degrees; instants are written in UTC with ``Z``.
    """
    document: dict[str, Any] = {
        "type": PLAN_TYPE,
        "mission_id": mission_id,
        "version": version,
        "valid_from": _instant(valid_from),
        "valid_until": _instant(valid_until),
        "waypoints": [list(point) for point in waypoints],
    }
    document.update(extra)
    return json.dumps(document, separators=(",", ":")).encode()


def submission(artifact: bytes, signature: str) -> dict[str, Any]:
    """The body of ``POST /api/v1/missions/{id}/route-plans`` for signed bytes."""
    return {
        "artifact": base64.b64encode(artifact).decode("ascii"),
        "signature": signature,
        "digest": f"sha256:{hashlib.sha256(artifact).hexdigest()}",
        "size": len(artifact),
    }


def signed_submission(private_pem: bytes, artifact: bytes) -> dict[str, Any]:
    return submission(artifact, blob_sign(private_pem, artifact))
