"""Checking a signed route plan artifact, in the order that keeps unverified bytes unread.

1. ``integrity_check``: the declared length and SHA-256 digest against the bytes received;
2. ``signature_verifies``: ECDSA P-256 over SHA-256 of those exact bytes (a cosign
   ``sign-blob --key`` signature: ASN.1 DER, base64), with ``cryptography``;
3. only then ``plan_parse``: strict UTF-8 JSON (no duplicate members, no NaN), and a
   strict schema.

Nothing here touches the database; ``missions.routeplans.services`` picks the keys and
stores the outcome. docs/decisions/0024-signed-route-plans.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tms_console.unstorable import unstorable_find

PLAN_TYPE = "tms.route_plan.v1"
MAX_ARTIFACT_BYTES = 262_144
MIN_WAYPOINTS = 2
MAX_WAYPOINTS = 5_000
MAX_VERSION = 2_147_483_647  # a PositiveIntegerField on PostgreSQL
MAX_VALIDITY = timedelta(days=31)
# A DER ECDSA P-256 signature is at most 72 bytes; anything longer is not one.
MAX_SIGNATURE_BYTES = 72
PLAN_MEMBERS = frozenset({"type", "mission_id", "version", "valid_from", "valid_until", "waypoints"})

# RFC 3339 §5.6 date-time with its offset (``Z`` or ``±hh:mm``).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})", re.ASCII
)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)


class Reason:
    """Why a submission was refused: the problem type (``/api/v1/problems/<code>``) and its HTTP status."""

    LENGTH_MISMATCH = "route-plan-length-mismatch"
    DIGEST_MISMATCH = "route-plan-digest-mismatch"
    NO_SIGNING_KEY = "route-plan-no-signing-key"
    SIGNATURE_INVALID = "route-plan-signature-invalid"
    KEY_RETIRED = "route-plan-key-retired"
    KEY_OF_OTHER_CARRIER = "route-plan-key-of-other-carrier"
    MALFORMED = "route-plan-malformed"
    INVALID = "route-plan-invalid"
    MISSION_MISMATCH = "route-plan-mission-mismatch"
    MISSION_CLOSED = "route-plan-mission-closed"
    ROLLBACK = "route-plan-rollback"
    NOT_YET_VALID = "route-plan-not-yet-valid"
    EXPIRED = "route-plan-expired"

    STATUS: dict[str, int] = {
        LENGTH_MISMATCH: 422,
        DIGEST_MISMATCH: 422,
        NO_SIGNING_KEY: 422,
        SIGNATURE_INVALID: 422,
        KEY_RETIRED: 422,
        KEY_OF_OTHER_CARRIER: 422,
        MALFORMED: 422,
        INVALID: 422,
        MISSION_MISMATCH: 422,
        MISSION_CLOSED: 409,
        ROLLBACK: 409,
        NOT_YET_VALID: 422,
        EXPIRED: 422,
    }
    TITLES: dict[str, str] = {
        LENGTH_MISMATCH: "Route plan length mismatch",
        DIGEST_MISMATCH: "Route plan digest mismatch",
        NO_SIGNING_KEY: "No signing key registered",
        SIGNATURE_INVALID: "Route plan signature does not verify",
        KEY_RETIRED: "Route plan signed with a retired key",
        KEY_OF_OTHER_CARRIER: "Route plan signed with another carrier's key",
        MALFORMED: "Route plan is not strict JSON",
        INVALID: "Route plan breaks the schema",
        MISSION_MISMATCH: "Route plan names another mission",
        MISSION_CLOSED: "Mission is closed",
        ROLLBACK: "Route plan version rollback",
        NOT_YET_VALID: "Route plan not yet valid",
        EXPIRED: "Route plan expired",
    }


class PlanRefused(Exception):
    """A submission refused for ``reason`` (a ``Reason`` code); ``errors`` point into the plan."""

    def __init__(self, reason: str, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.errors = errors or []

    @property
    def status(self) -> int:
        return Reason.STATUS[self.reason]

    @property
    def title(self) -> str:
        return Reason.TITLES[self.reason]


@dataclass(frozen=True)
class Submission:
    """What a carrier sent: the artifact's bytes, its detached signature and what it declares about the bytes."""

    artifact: bytes
    signature: bytes  # DER, decoded from ``signature_text``; b"" when that is not base64
    signature_text: str
    declared_sha256: str
    declared_size: int

    @classmethod
    def of(cls, *, artifact: bytes, signature_text: str, declared_sha256: str, declared_size: int) -> Submission:
        return cls(
            artifact=artifact,
            signature=signature_decode(signature_text),
            signature_text=signature_text,
            declared_sha256=declared_sha256,
            declared_size=declared_size,
        )


@dataclass(frozen=True)
class ParsedPlan:
    """A plan read from verified bytes and checked against the schema."""

    mission_id: int
    version: int
    valid_from: datetime
    valid_until: datetime
    waypoints: list[list[float]] = field(default_factory=list)


# ---------------------------------------------------------------- keys


class PublicKeyError(ValueError):
    """A public key that is not a PEM ECDSA P-256 SubjectPublicKeyInfo."""


def public_key_load(pem: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in ``pem`` (``-----BEGIN PUBLIC KEY-----``); ``PublicKeyError`` for anything else."""
    text = pem.strip()
    if "PRIVATE KEY" in text:
        raise PublicKeyError("This is a private key: paste the public key only (cosign.pub), and keep the private key.")
    if not text.startswith("-----BEGIN PUBLIC KEY-----"):
        raise PublicKeyError("Paste a PEM public key: it starts with -----BEGIN PUBLIC KEY----- (cosign.pub).")
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise PublicKeyError("The PEM block does not hold a readable public key.") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PublicKeyError("Only ECDSA P-256 keys are accepted (cosign generate-key-pair makes one).")
    return key


def public_key_pem(key: ec.EllipticCurvePublicKey) -> str:
    """The key in one canonical PEM spelling (what is stored)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: the same key has the same id whatever its PEM spelling."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------- the checks, in order


def signature_decode(text: str) -> bytes:
    """The DER signature from its base64 text (cosign writes standard base64); b'' when it is not base64."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    return raw if len(raw) <= MAX_SIGNATURE_BYTES else b""


def integrity_check(submission: Submission) -> str:
    """Step 1: the bytes are as long as declared and hash to the declared digest; returns the hex digest."""
    size = len(submission.artifact)
    if size != submission.declared_size:
        raise PlanRefused(
            Reason.LENGTH_MISMATCH,
            f"The artifact is {size} bytes; the submission declares {submission.declared_size}.",
        )
    digest = hashlib.sha256(submission.artifact).hexdigest()
    declared = submission.declared_sha256.lower()
    if not _SHA256_HEX.fullmatch(declared) or not hmac.compare_digest(digest, declared):
        raise PlanRefused(
            Reason.DIGEST_MISMATCH,
            f"The artifact's SHA-256 is {digest}; the submission declares {submission.declared_sha256[:80]}.",
        )
    return digest


def signature_verifies(key: ec.EllipticCurvePublicKey, signature: bytes, artifact: bytes) -> bool:
    """Step 2: ECDSA P-256 / SHA-256 over the exact artifact bytes (cosign ``sign-blob --key``)."""
    if not signature:
        return False
    try:
        key.verify(signature, artifact, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers could read a duplicated member differently: the signed document must have one meaning.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise PlanRefused(Reason.MALFORMED, f"The plan repeats the member {key[:40]!r}.")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise PlanRefused(Reason.MALFORMED, f"The plan holds {name}, which is not JSON.")


def _instant(value: Any, name: str, errors: list[dict[str, str]]) -> datetime | None:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        errors.append(_error(f"/{name}", "An RFC 3339 date-time with its offset is required."))
        return None
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        errors.append(_error(f"/{name}", "Not a date-time that exists (or outside the years 0001 to 9999)."))
        return None


def _error(pointer: str, detail: str) -> dict[str, str]:
    return {"pointer": pointer, "detail": detail, "code": "invalid"}


def _integer(value: Any, name: str, low: int, high: int, errors: list[dict[str, str]]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(_error(f"/{name}", f"An integer from {low} to {high} is required."))
        return None
    return value


def _coordinate(value: Any, low: float, high: float) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and low <= value <= high
    )


def _waypoints(value: Any, errors: list[dict[str, str]]) -> list[list[float]]:
    if not isinstance(value, list) or not MIN_WAYPOINTS <= len(value) <= MAX_WAYPOINTS:
        errors.append(_error("/waypoints", f"A list of {MIN_WAYPOINTS} to {MAX_WAYPOINTS} [lat, lon] pairs."))
        return []
    points: list[list[float]] = []
    for index, point in enumerate(value):
        if not isinstance(point, list) or len(point) != 2:
            errors.append(_error(f"/waypoints/{index}", "A [lat, lon] pair of numbers is required."))
        elif not _coordinate(point[0], -90.0, 90.0):
            errors.append(_error(f"/waypoints/{index}/0", "Latitude is a number from -90 to 90."))
        elif not _coordinate(point[1], -180.0, 180.0):
            errors.append(_error(f"/waypoints/{index}/1", "Longitude is a number from -180 to 180."))
        else:
            points.append([float(point[0]), float(point[1])])
        if len(errors) >= 20:
            break  # enough to fix the plan; a long list of the same mistake helps no one
    return points


def plan_parse(artifact: bytes) -> ParsedPlan:
    """Step 3, only for bytes whose signature verified: strict JSON, then the plan schema."""
    try:
        text = artifact.decode("utf-8")
        document = json.loads(text, object_pairs_hook=_no_duplicate_members, parse_constant=_no_constants)
    except PlanRefused:
        raise
    except UnicodeDecodeError:
        raise PlanRefused(Reason.MALFORMED, "The plan is not UTF-8 text.") from None
    except (ValueError, RecursionError) as exc:
        raise PlanRefused(Reason.MALFORMED, f"The plan is not JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise PlanRefused(Reason.INVALID, "The plan is a JSON object.", errors=[_error("", "An object is required.")])
    # Signed or not, a string no column can store (U+0000, a lone surrogate) would break the
    # refusal's own record and answer: named by its pointer, before anything echoes it.
    unstorable = unstorable_find(document)
    if unstorable is not None:
        raise PlanRefused(
            Reason.INVALID, "The route plan holds a string that cannot be stored.", errors=[unstorable.error()]
        )
    errors: list[dict[str, str]] = []
    for name in sorted(PLAN_MEMBERS - document.keys()):
        errors.append({"pointer": f"/{name}", "detail": "This member is required.", "code": "required"})
    for name in sorted(document.keys() - PLAN_MEMBERS)[:20]:
        errors.append(_error(f"/{name[:60]}", "Not a member of a route plan."))
    if "type" in document and document["type"] != PLAN_TYPE:
        errors.append(_error("/type", f"The plan's type is {PLAN_TYPE!r}."))
    mission_id = _integer(document.get("mission_id"), "mission_id", 1, 2**63 - 1, errors)
    version = _integer(document.get("version"), "version", 1, MAX_VERSION, errors)
    valid_from = _instant(document.get("valid_from"), "valid_from", errors)
    valid_until = _instant(document.get("valid_until"), "valid_until", errors)
    waypoints = _waypoints(document.get("waypoints"), errors)
    if valid_from and valid_until:
        if valid_until <= valid_from:
            errors.append(_error("/valid_until", "The window ends after it starts."))
        elif valid_until - valid_from > MAX_VALIDITY:
            errors.append(_error("/valid_until", f"A plan is valid for at most {MAX_VALIDITY.days} days."))
    if errors:
        raise PlanRefused(Reason.INVALID, "The route plan does not follow the schema.", errors=errors[:40])
    assert mission_id is not None and version is not None and valid_from and valid_until
    return ParsedPlan(
        mission_id=mission_id, version=version, valid_from=valid_from, valid_until=valid_until, waypoints=waypoints
    )
