"""Offline verification of evidence bundles: Merkle proofs, signed notes, checkpoints, DSSE statements.

This module depends on nothing but the Python standard library and the ``cryptography`` package
and imports nothing from the project: ``tools/verify_evidence.py`` (the command line) loads it by
path, so a partner or an insurer needs just those two files. The signing side (``merkle``,
``note``, ``checkpoint``, ``dsse``, ``bundle``) reuses these checks, so the console and an outside
verifier run the same code. Only what a bundle verifier needs is here; consistency proofs,
threshold DSSE verification and key-string parsing live in the library modules.

Specs: RFC 9162 §2.1 (Merkle hashing, inclusion proofs), C2SP signed-note and tlog-checkpoint,
DSSE v1 (protocol.md, envelope.md), in-toto Statement v1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
BUNDLE_FORMAT = "https://tms-console.example/evidence-bundle/v1"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_PREFIX = "https://tms-console.example/attestations/"
SNAPSHOT_PREDICATE_TYPE = PREDICATE_PREFIX + "telemetry-snapshot/v1"
SNAPSHOT_MEDIA_TYPE = "application/x-ndjson"
NOTE_ALG_ED25519 = 0x01
# The Go reference (golang.org/x/mod/sumdb/note) refuses notes with more than 100 signatures;
# C2SP requires accepting at least 16.
NOTE_MAX_SIGNATURES = 100
NOTE_SIG_PREFIX = "\u2014 "  # em dash, space


class EvidenceError(ValueError):
    """Base class: something in a proof, note, checkpoint or envelope does not hold."""


class ProofError(EvidenceError):
    """A Merkle inclusion or consistency proof does not verify."""


class NoteError(EvidenceError):
    """A signed note could not be opened."""


class MalformedNoteError(NoteError):
    """The note breaks the signed-note syntax (the Go reference's "malformed note")."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("malformed note" + (f": {detail}" if detail else ""))


class UnverifiedNoteError(NoteError):
    """No signature on the note is by a known key."""

    def __init__(self, note: Note) -> None:
        super().__init__("note has no verifiable signatures")
        self.note = note


class InvalidNoteSignatureError(NoteError):
    """A signature by a known key does not verify: the whole note is rejected (C2SP SHOULD)."""

    def __init__(self, name: str, key_hash: int) -> None:
        super().__init__(f"invalid signature for key {name}+{key_hash:08x}")
        self.name = name
        self.key_hash = key_hash


class CheckpointError(EvidenceError):
    """A checkpoint body does not follow c2sp.org/tlog-checkpoint."""


class EnvelopeError(EvidenceError):
    """A DSSE envelope or the in-toto statement inside it is not acceptable."""


# ---------------------------------------------------------------- hashing and keys


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d0}) = SHA-256(0x00 || d0)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def key_id_for(public_key: bytes) -> str:
    """Our key id: lowercase hex of the first 8 bytes of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def b64decode_strict(text: str) -> bytes:
    """Standard base64 (RFC 4648 §4), padded, and canonical: re-encoding gives the same text."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


_B64_ANY = re.compile(r"^[A-Za-z0-9+/\-_]*={0,2}$")


def b64decode_any(text: object) -> bytes:
    """DSSE: verifiers MUST accept standard and URL-safe base64; padding is optional."""
    if not isinstance(text, str) or not _B64_ANY.match(text):
        raise ValueError("invalid base64")
    body = text.rstrip("=")
    if len(body) % 4 == 1:
        raise ValueError("invalid base64 length")
    standard = body.replace("-", "+").replace("_", "/")
    padded = standard + "=" * (-len(standard) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64: {exc}") from exc
    # Refuse non-zero trailing bits: otherwise two encodings of the same bytes exist and a changed
    # character in a bundle could go unnoticed.
    if base64.b64encode(raw).decode("ascii") != padded:
        raise ValueError("non-canonical base64")
    return raw


def public_key_from_pem(data: bytes) -> bytes:
    """Raw 32 bytes of an Ed25519 SubjectPublicKeyInfo PEM."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------- Merkle proofs (RFC 9162 §2.1.3, §2.1.4)


def check_hash_length(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def inclusion_proof_size(index: int, size: int) -> int:
    """Number of hashes in the audit path for leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an audit path (RFC 9162 §2.1.3.2); raises ProofError on a malformed path."""
    if index < 0 or size < 0:
        raise ProofError("negative leaf index or tree size")
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    check_hash_length(leaf, "leaf hash")
    expected = inclusion_proof_size(index, size)
    if len(proof) != expected:
        raise ProofError(f"proof has {len(proof)} hashes, leaf {index} in a tree of size {size} needs {expected}")
    for position, element in enumerate(proof):
        check_hash_length(element, f"proof hash {position}")
    fn, sn, r = index, size - 1, leaf
    for element in proof:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(element, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree with ``root``."""
    check_hash_length(root, "root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not match the root at size {size}")


# ---------------------------------------------------------------- signed notes (c2sp.org/signed-note)


def note_key_hash(name: str, public_key: bytes, alg: int = NOTE_ALG_ED25519) -> int:
    """key ID = SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode spaces, no plus (C2SP); no control characters either."""
    return bool(name) and not any(ch.isspace() or ch == "+" or ord(ch) < 0x20 for ch in name)


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier: key name, 32-bit key hash and raw public key."""

    name: str
    key_hash: int
    public_key: bytes

    @classmethod
    def for_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        if not is_valid_key_name(name):
            raise ValueError(f"invalid key name {name!r}")
        if len(public_key) != 32:
            raise ValueError("Ed25519 public keys are 32 bytes")
        return cls(name, note_key_hash(name, public_key), public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return ed25519_verify(self.public_key, signature, message)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_hash: int
    base64: str


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the signatures that verified and those by unknown keys."""

    text: str
    sigs: tuple[NoteSignature, ...] = ()
    unverified_sigs: tuple[NoteSignature, ...] = ()


def note_text_is_valid(text: str) -> bool:
    return not any(ord(ch) < 0x20 and ch != "\n" for ch in text)


def note_open(message: bytes | str, verifiers: Iterable[NoteVerifier]) -> Note:
    """Open a signed note: parse it and check every signature by a known key.

    Raises MalformedNoteError, InvalidNoteSignatureError (a known key's signature fails) or
    UnverifiedNoteError (no signature by a known key). Unknown keys are ignored, as C2SP requires.
    """
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("not UTF-8") from exc
    if not note_text_is_valid(message):
        raise MalformedNoteError("control character")
    if not message.endswith("\n"):
        raise MalformedNoteError("does not end in a newline")
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line before the signatures")
    text, sig_block = message[: split + 1], message[split + 2 :]
    if not sig_block:
        raise MalformedNoteError("no signatures")
    lines = sig_block[:-1].split("\n")
    if len(lines) > NOTE_MAX_SIGNATURES:
        raise MalformedNoteError("too many signatures")
    known: dict[tuple[str, int], list[NoteVerifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_hash), []).append(verifier)
    text_bytes = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen_verified: set[tuple[str, int]] = set()
    for line in lines:
        if not line.startswith(NOTE_SIG_PREFIX):
            raise MalformedNoteError("signature line does not start with an em dash")
        name, space, b64 = line[len(NOTE_SIG_PREFIX) :].partition(" ")
        if not space or not is_valid_key_name(name):
            raise MalformedNoteError("bad key name in a signature line")
        try:
            raw = b64decode_strict(b64)
        except ValueError as exc:
            raise MalformedNoteError("bad signature encoding") from exc
        if len(raw) < 5:
            raise MalformedNoteError("signature too short")
        key_hash = int.from_bytes(raw[:4], "big")
        sig = NoteSignature(name, key_hash, b64)
        candidates = known.get((name, key_hash), [])
        if not candidates:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len({c.public_key for c in candidates}) > 1:
            raise NoteError(f"ambiguous key {name}+{key_hash:08x}")
        if (name, key_hash) in seen_verified:
            continue
        if not candidates[0].verify(text_bytes, raw[4:]):
            raise InvalidNoteSignatureError(name, key_hash)
        seen_verified.add((name, key_hash))
        verified.append(sig)
    note = Note(text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(note)
    return note


# ---------------------------------------------------------------- checkpoints (c2sp.org/tlog-checkpoint)


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash and optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def checkpoint_parse(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text, without signatures)."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint body does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint body has fewer than three lines")
    if any(not line for line in lines):
        raise CheckpointError("checkpoint body has an empty line")
    origin, size_line, root_line, *extensions = lines
    if not re.fullmatch(r"0|[1-9][0-9]*", size_line):
        raise CheckpointError(f"tree size {size_line!r} is not a decimal number without leading zeros")
    try:
        root = b64decode_strict(root_line)
    except ValueError as exc:
        raise CheckpointError(f"root hash is not base64: {exc}") from exc
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


# ---------------------------------------------------------------- DSSE and in-toto statements


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8, no NaN: how records are hashed into subjects."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def statement_digest(payload_type: str, payload: bytes) -> bytes:
    """What the log stores for a statement: SHA-256 of its PAE (covers type and payload, not signatures)."""
    return hashlib.sha256(pae(payload_type, payload)).digest()


@dataclass(frozen=True)
class ParsedEnvelope:
    """A decoded DSSE envelope: payload type, payload bytes and (keyid or None, signature) pairs."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str | None, bytes], ...]


def envelope_parse(envelope: Any) -> ParsedEnvelope:
    if not isinstance(envelope, Mapping):
        raise EnvelopeError("envelope is not a JSON object")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise EnvelopeError("payloadType is missing")
    try:
        payload = b64decode_any(envelope.get("payload"))
    except ValueError as exc:
        raise EnvelopeError(f"payload is not base64: {exc}") from exc
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        raise EnvelopeError("signatures is not a list")
    decoded: list[tuple[str | None, bytes]] = []
    for position, entry in enumerate(signatures):
        if not isinstance(entry, Mapping):
            raise EnvelopeError(f"signature {position} is not an object")
        keyid = entry.get("keyid")
        if keyid is not None and not isinstance(keyid, str):
            raise EnvelopeError(f"signature {position} keyid is not a string")
        try:
            sig = b64decode_any(entry.get("sig"))
        except ValueError as exc:
            raise EnvelopeError(f"signature {position} is not base64: {exc}") from exc
        decoded.append((keyid or None, sig))
    return ParsedEnvelope(payload_type, payload, tuple(decoded))


def statement_parse(payload: bytes) -> dict[str, Any]:
    """Parse and check the shape of an in-toto Statement v1."""
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError(f"payload is not JSON: {exc}") from exc
    if not isinstance(statement, dict):
        raise EnvelopeError("statement is not a JSON object")
    if statement.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError(f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise EnvelopeError("subject must be a non-empty list")
    for position, subject in enumerate(subjects):
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict) or not subject["digest"]:
            raise EnvelopeError(f"subject {position} has no digest")
        sha = subject["digest"].get("sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise EnvelopeError(f"subject {position} sha256 digest is not 64 lowercase hex characters")
    if not isinstance(statement.get("predicateType"), str) or not statement["predicateType"]:
        raise EnvelopeError("predicateType is missing")
    if "predicate" in statement and not isinstance(statement["predicate"], dict):
        raise EnvelopeError("predicate is not a JSON object")
    return statement


# ---------------------------------------------------------------- evidence bundles


@dataclass
class VerifyReport:
    """The outcome of ``bundle_verify``: every failure named, plus what was checked."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = "OK: evidence bundle verifies" if self.ok else f"FAILED: {len(self.errors)} problem(s)"
        lines = [head]
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  ok: {c}" for c in self.checked]
        return "\n".join(lines)


def _fields(where: str, obj: Any, required: set[str], optional: frozenset[str] = frozenset()) -> str | None:
    """Exact field sets: every byte of a bundle means something, so a renamed field cannot slip by."""
    if not isinstance(obj, dict):
        return f"{where}: not a JSON object"
    missing, extra = sorted(required - obj.keys()), sorted(obj.keys() - required - optional)
    problems = ([f"missing field(s) {', '.join(missing)}"] if missing else []) + (
        [f"unexpected field(s) {', '.join(extra)}"] if extra else []
    )
    return f"{where}: {'; '.join(problems)}" if problems else None


def _load_keys(raw_keys: Any, report: VerifyReport) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    if not isinstance(raw_keys, list):
        report.errors.append("bundle field 'public_keys' must be a list")
        return keys
    for position, entry in enumerate(raw_keys):
        where = f"public key {position}"
        problem = _fields(where, entry, {"key_id", "algorithm", "public_key"})
        if problem:
            report.errors.append(problem)
            continue
        if entry["algorithm"] != "ed25519":
            report.errors.append(f"{where}: algorithm is {entry['algorithm']!r}, expected 'ed25519'")
            continue
        try:
            public_key = b64decode_strict(str(entry.get("public_key")))
        except ValueError:
            report.errors.append(f"{where}: public_key is not base64")
            continue
        if len(public_key) != 32:
            report.errors.append(f"{where}: an Ed25519 public key is 32 bytes, got {len(public_key)}")
            continue
        computed = key_id_for(public_key)
        if entry.get("key_id") != computed:
            report.errors.append(
                f"{where}: key_id {entry.get('key_id')!r} does not match the key (computed {computed})"
            )
            continue
        keys[computed] = public_key
    return keys


def _verify_checkpoint(text: Any, keys: Mapping[str, bytes], report: VerifyReport) -> Checkpoint | None:
    if not isinstance(text, str):
        report.errors.append("bundle field 'checkpoint' must be the signed note text")
        return None
    split = text.rfind("\n\n")
    try:
        checkpoint = checkpoint_parse(text[: split + 1] if split >= 0 else text)
    except CheckpointError as exc:
        report.errors.append(f"checkpoint body is malformed: {exc}")
        return None
    # The log key's note name is the checkpoint origin (tlog-checkpoint: it SHOULD match).
    by_hash: dict[int, str] = {}
    verifiers = []
    for key_id, public_key in keys.items():
        try:
            verifier = NoteVerifier.for_key(checkpoint.origin, public_key)
        except ValueError:
            continue
        verifiers.append(verifier)
        by_hash[verifier.key_hash] = key_id
    try:
        note = note_open(text, verifiers)
    except InvalidNoteSignatureError as exc:
        report.errors.append(f"checkpoint signature by key {by_hash.get(exc.key_hash, '?')} does not verify")
    except UnverifiedNoteError as exc:
        seen = ", ".join(f"{s.name}+{s.key_hash:08x}" for s in exc.note.unverified_sigs)
        report.errors.append(f"checkpoint signed by unknown key ({seen})")
    except NoteError as exc:
        report.errors.append(f"checkpoint is not a valid signed note: {exc}")
    else:
        signers = ", ".join(by_hash[s.key_hash] for s in note.sigs)
        report.checked.append(
            f"checkpoint of log {checkpoint.origin!r} at size {checkpoint.size} signed by key {signers}"
        )
    return checkpoint


def _verify_statement(
    position: int, entry: Any, keys: Mapping[str, bytes], checkpoint: Checkpoint | None, report: VerifyReport
) -> dict[str, Any] | None:
    where = f"statement {position}"
    problem = _fields(where, entry, {"envelope", "log"}) or _fields(
        f"{where} envelope", entry.get("envelope"), {"payload", "payloadType", "signatures"}
    )
    if problem:
        report.errors.append(problem)
        if not isinstance(entry, dict):
            return None
    signatures = entry["envelope"].get("signatures") if problem is None else None
    for number, sig_entry in enumerate(signatures if isinstance(signatures, list) else []):
        # Our bundles always name the key: keyid is an unauthenticated hint, but a renamed or dropped
        # field must still be reported.
        sig_problem = _fields(f"{where} signature {number}", sig_entry, {"keyid", "sig"})
        if not sig_problem and (not isinstance(sig_entry["keyid"], str) or not sig_entry["keyid"]):
            sig_problem = f"{where} signature {number}: keyid must name the key"
        if sig_problem:
            report.errors.append(sig_problem)
    try:
        parsed = envelope_parse(entry.get("envelope"))
    except EnvelopeError as exc:
        report.errors.append(f"{where}: envelope is malformed: {exc}")
        return None
    statement: dict[str, Any] | None = None
    signature_ok = False
    if parsed.payload_type != DSSE_PAYLOAD_TYPE:
        report.errors.append(f"{where}: payloadType is {parsed.payload_type!r}, expected {DSSE_PAYLOAD_TYPE!r}")
    elif not parsed.signatures:
        report.errors.append(f"{where}: envelope has no signatures")
    else:
        message = pae(parsed.payload_type, parsed.payload)
        good: list[str] = []
        failed: list[str] = []
        unknown: list[str] = []
        for keyid, sig in parsed.signatures:
            if keyid is None:
                # An unnamed signature is tried against every known key (DSSE: KEYID is only a hint).
                matches = [k for k, pk in keys.items() if ed25519_verify(pk, sig, message)]
                good += matches
                if not matches:
                    unknown.append("(no keyid)")
            elif keyid not in keys:
                unknown.append(keyid)
            elif ed25519_verify(keys[keyid], sig, message):
                good.append(keyid)
            else:
                failed.append(keyid)
        # A known key whose signature fails rejects the statement, as for signed notes; signatures by
        # other keys (a carrier's, a retired key not given) only matter when nothing else verifies.
        for keyid in failed:
            report.errors.append(f"{where}: DSSE signature does not verify with key {keyid}")
        if good and not failed:
            signature_ok = True
            for keyid in unknown:
                report.warnings.append(f"{where}: signature by key {keyid} not checked (key not known)")
        elif not good and not failed:
            report.errors.append(f"{where}: signed by unknown key {', '.join(unknown)}")
        try:
            statement = statement_parse(parsed.payload)
        except EnvelopeError as exc:
            report.errors.append(f"{where}: payload is not an in-toto Statement v1: {exc}")
        else:
            _check_record_digest(where, statement, report)
    if signature_ok and statement is not None:
        report.checked.append(f"{where} ({statement['predicateType']}) signature verifies")
    _verify_log_entry(
        where, entry.get("log"), statement_digest(parsed.payload_type, parsed.payload), checkpoint, report
    )
    return statement if signature_ok else None


def _check_record_digest(where: str, statement: Mapping[str, Any], report: VerifyReport) -> None:
    """Our record-based statements carry their record: its canonical hash must be the subject digest."""
    predicate = statement.get("predicate") or {}
    if not str(statement["predicateType"]).startswith(PREDICATE_PREFIX) or "record" not in predicate:
        return
    expected = hashlib.sha256(canonical_json(predicate["record"])).hexdigest()
    if statement["subject"][0]["digest"].get("sha256") != expected:
        report.errors.append(f"{where}: subject digest does not match the attested record")


def _verify_log_entry(where: str, log: Any, digest: bytes, checkpoint: Checkpoint | None, report: VerifyReport) -> None:
    if log is None:
        report.errors.append(f"{where}: no log entry (leaf_index, tree_size, inclusion_proof)")
        return
    problem = _fields(f"{where} log entry", log, {"leaf_index", "tree_size", "inclusion_proof"})
    if problem:
        report.errors.append(problem)
        return
    index, size, raw_proof = log["leaf_index"], log["tree_size"], log["inclusion_proof"]
    if type(index) is not int or type(size) is not int or not isinstance(raw_proof, list):
        report.errors.append(f"{where}: log entry needs integer leaf_index, tree_size and a list inclusion_proof")
        return
    try:
        proof = [b64decode_strict(h) for h in raw_proof]
    except (ValueError, TypeError):
        report.errors.append(f"{where}: inclusion proof for leaf {index} has a hash that is not base64")
        return
    if checkpoint is None:
        report.errors.append(f"{where}: inclusion proof for leaf {index} not checked: no usable checkpoint")
        return
    if size != checkpoint.size:
        report.errors.append(
            f"{where}: inclusion proof for leaf {index} is for tree size {size}, "
            f"the checkpoint is at size {checkpoint.size}"
        )
        return
    if not 0 <= index < checkpoint.size:
        report.errors.append(f"{where}: leaf index {index} is outside the checkpoint tree of size {checkpoint.size}")
        return
    try:
        root = root_from_inclusion_proof(index, checkpoint.size, leaf_hash(digest), proof)
    except ProofError as exc:
        report.errors.append(f"{where}: inclusion proof for leaf {index} is malformed: {exc}")
        return
    if root != checkpoint.root_hash:
        report.errors.append(
            f"{where}: inclusion proof for leaf {index} does not match checkpoint root at size {checkpoint.size}"
        )
        return
    report.checked.append(f"{where} is leaf {index} of the log at size {checkpoint.size}")


def _verify_snapshots(raw: Any, statements: Sequence[tuple[int, dict[str, Any]]], report: VerifyReport) -> None:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        report.errors.append("bundle field 'snapshots' must be a list")
        return
    attested: dict[str, list[tuple[int, str]]] = {}
    for position, statement in statements:
        if statement.get("predicateType") != SNAPSHOT_PREDICATE_TYPE:
            continue
        for subject in statement["subject"]:
            attested.setdefault(str(subject.get("name")), []).append((position, str(subject["digest"].get("sha256"))))
    included: set[str] = set()
    for number, snapshot in enumerate(raw):
        problem = _fields(f"snapshot {number}", snapshot, {"name", "media_type", "content"}, frozenset({"purged"}))
        if problem or not isinstance(snapshot["name"], str):
            report.errors.append(problem or f"snapshot {number}: name is not a string")
            continue
        name, content = snapshot["name"], snapshot.get("content")
        included.add(name)
        where = f"snapshot {name!r}"
        if snapshot.get("media_type") != SNAPSHOT_MEDIA_TYPE:
            report.errors.append(
                f"{where}: media_type is {snapshot.get('media_type')!r}, expected {SNAPSHOT_MEDIA_TYPE!r}"
            )
            continue
        if content is None and snapshot.get("purged") is True:
            # Raw telemetry purged under the retention policy: the attested hash stays provable,
            # the events themselves can no longer be shown.
            if name in attested:
                report.warnings.append(f"{where}: events purged under the retention policy; hash attested only")
            else:
                report.errors.append(f"{where} is not attested by any verified statement")
            continue
        if not isinstance(content, str):
            report.errors.append(f"{where}: content must be a string of JSON lines")
            continue
        bad_line = next((n for n, line in enumerate(content.splitlines(), 1) if not _is_json(line)), None)
        if bad_line is not None:
            report.errors.append(f"{where}: line {bad_line} is not valid JSON")
        actual = hashlib.sha256(content.encode("utf-8")).hexdigest()
        claims = attested.get(name)
        if not claims:
            report.errors.append(f"{where} is not attested by any verified statement")
            continue
        for position, digest in claims:
            if digest != actual:
                report.errors.append(
                    f"{where}: snapshot hash mismatch (content sha256 {actual}, statement {position} attests {digest})"
                )
            else:
                report.checked.append(f"{where} ({len(content.splitlines())} events) matches statement {position}")
    for name in sorted(set(attested) - included):
        statements_named = ", ".join(str(p) for p, _ in attested[name])
        report.errors.append(
            f"snapshot {name!r} is attested by statement {statements_named} but is missing from the bundle"
        )


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def bundle_verify(bundle: bytes | str, trusted_keys: Mapping[str, bytes] | None = None) -> VerifyReport:
    """Check everything in an evidence bundle and name each failure precisely.

    ``trusted_keys`` maps key id to raw Ed25519 public key. Without it the keys carried in the
    bundle are used, which proves integrity but not origin (a warning says so); pass the
    operator's published keys to prove origin.
    """
    report = VerifyReport()
    try:
        _bundle_verify(bundle, trusted_keys, report)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        # Defensive: hostile structures must produce a failed report, never a traceback.
        report.errors.append(f"bundle structure is invalid: {exc!r}")
    return report


def _bundle_verify(bundle: bytes | str, trusted_keys: Mapping[str, bytes] | None, report: VerifyReport) -> None:
    if isinstance(bundle, bytes):
        try:
            bundle = bundle.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.errors.append(f"bundle is not UTF-8 text: {exc}")
            return
    try:
        data = json.loads(bundle)
    except ValueError as exc:
        report.errors.append(f"bundle is not valid JSON (truncated?): {exc}")
        return
    if not isinstance(data, dict):
        report.errors.append("bundle is not a JSON object")
        return
    if data.get("format") != BUNDLE_FORMAT:
        report.errors.append(f"bundle format is {data.get('format')!r}, expected {BUNDLE_FORMAT!r}")
        return
    problem = _fields(
        "bundle", data, {"format", "subject", "public_keys", "checkpoint", "statements"}, frozenset({"snapshots"})
    )
    if problem:
        report.errors.append(problem)
    bundle_keys = _load_keys(data.get("public_keys"), report)
    if trusted_keys is None:
        keys = bundle_keys
        report.warnings.append("no trusted keys given: verified against the keys carried in the bundle")
    else:
        keys = dict(trusted_keys)
        for key_id in sorted(set(bundle_keys) - set(keys)):
            report.warnings.append(f"bundle key {key_id} is not among the trusted keys: ignored")
    checkpoint = _verify_checkpoint(data.get("checkpoint"), keys, report)
    raw_statements = data.get("statements")
    if not isinstance(raw_statements, list) or not raw_statements:
        report.errors.append("bundle field 'statements' must be a non-empty list")
        return
    verified = []
    for position, entry in enumerate(raw_statements):
        statement = _verify_statement(position, entry, keys, checkpoint, report)
        if statement is not None:
            verified.append((position, statement))
    _verify_snapshots(data.get("snapshots"), verified, report)
    subject = data.get("subject")
    names = {str(sub.get("name")) for _, st in verified for sub in st["subject"]}
    if not isinstance(subject, str) or not subject:
        report.errors.append("bundle field 'subject' must name what the bundle is about")
    elif subject not in names:
        report.errors.append(f"bundle subject {subject!r} is not the subject of any verified statement")
    else:
        report.checked.append(f"bundle is about {subject}")
