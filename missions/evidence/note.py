"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 signatures.

A note is text ending in a newline, a blank line, then signature lines
``— <key name> <base64(4-byte key hash || signature)>``. The key hash is
SHA-256(name || 0x0A || 0x01 || public key)[:4]. Verifier keys are written
``<name>+<hex key hash>+<base64(0x01 || public key)>`` and signer keys
``PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 || seed)>``, as in golang.org/x/mod/sumdb/note.

Opening (verifying) notes is in ``verify_core`` and re-exported here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from missions.evidence.keys import Ed25519Signer, Signer
from missions.evidence.verify_core import (
    NOTE_ALG_ED25519,
    NOTE_SIG_PREFIX,
    InvalidNoteSignatureError,
    MalformedNoteError,
    Note,
    NoteError,
    NoteSignature,
    NoteVerifier,
    UnverifiedNoteError,
    b64decode_strict,
    is_valid_key_name,
    note_key_hash,
    note_open,
    note_text_is_valid,
)

__all__ = [
    "InvalidNoteSignatureError",
    "MalformedNoteError",
    "Note",
    "NoteError",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "UnverifiedNoteError",
    "note_key_hash",
    "note_open",
    "note_sign",
    "signer_key_format",
    "signer_key_parse",
    "verifier_key_format",
    "verifier_key_parse",
]


@dataclass(frozen=True)
class NoteSigner:
    """Signs notes under a key name with any ``Signer`` (an in-process key or a KMS)."""

    name: str
    signer: Signer

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValueError(f"invalid note key name {self.name!r}")

    @property
    def key_hash(self) -> int:
        return note_key_hash(self.name, self.signer.public_key_bytes)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_hash, self.signer.public_key_bytes)


def verifier_key_parse(vkey: str) -> NoteVerifier:
    """Parse ``<name>+<hex8 key hash>+<base64(0x01 || public key)>``; strict, like the Go reference."""
    name, sep1, rest = vkey.partition("+")
    hash_hex, sep2, key_b64 = rest.partition("+")
    if not sep1 or not sep2 or not is_valid_key_name(name):
        raise ValueError("malformed verifier key")
    if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
        raise ValueError("malformed verifier key hash")
    try:
        key = b64decode_strict(key_b64)
    except ValueError as exc:
        raise ValueError(f"malformed verifier key: {exc}") from exc
    if len(key) != 33 or key[0] != NOTE_ALG_ED25519:
        raise ValueError("verifier key is not an Ed25519 key")
    if note_key_hash(name, key[1:]) != int(hash_hex, 16):
        raise ValueError("verifier key hash does not match the key")
    return NoteVerifier(name, int(hash_hex, 16), key[1:])


def verifier_key_format(name: str, public_key: bytes) -> str:
    """``<name>+<hex8>+<base64(0x01 || public key)>``."""
    verifier = NoteVerifier.for_key(name, public_key)
    encoded = base64.b64encode(bytes([NOTE_ALG_ED25519]) + public_key).decode("ascii")
    return f"{verifier.name}+{verifier.key_hash:08x}+{encoded}"


def signer_key_format(name: str, seed: bytes) -> str:
    """``PRIVATE+KEY+<name>+<hex8>+<base64(0x01 || seed)>``: secret, for interop and tests only."""
    signer = Ed25519Signer.from_seed(seed)
    key_hash = note_key_hash(name, signer.public_key_bytes)
    encoded = base64.b64encode(bytes([NOTE_ALG_ED25519]) + seed).decode("ascii")
    return f"PRIVATE+KEY+{name}+{key_hash:08x}+{encoded}"


def signer_key_parse(skey: str) -> NoteSigner:
    """Parse a signer key string; the embedded key hash must match the derived public key."""
    parts = skey.split("+", 4)  # the base64 key itself may contain "+"
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise ValueError("malformed signer key")
    name, hash_hex, key_b64 = parts[2:]
    if not is_valid_key_name(name) or not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
        raise ValueError("malformed signer key")
    key = b64decode_strict(key_b64)
    if len(key) != 33 or key[0] != NOTE_ALG_ED25519:
        raise ValueError("signer key is not an Ed25519 key")
    signer = NoteSigner(name, Ed25519Signer.from_seed(key[1:]))
    if signer.key_hash != int(hash_hex, 16):
        raise ValueError("signer key hash does not match the key")
    return signer


def note_sign(text: str, signers: Sequence[NoteSigner], existing: Sequence[NoteSignature] = ()) -> str:
    """The signed note: ``text``, a blank line, existing signatures by other keys, then ours.

    A signature already present for one of ``signers`` (same name and key hash) is replaced.
    """
    if not text.endswith("\n") or not note_text_is_valid(text):
        raise MalformedNoteError("note text must end in a newline and contain no control characters")
    if not signers:
        raise ValueError("at least one signer is needed")
    ours = {(s.name, s.key_hash) for s in signers}
    lines = []
    for sig in existing:
        if not is_valid_key_name(sig.name):
            raise MalformedNoteError("bad key name in an existing signature")
        if (sig.name, sig.key_hash) not in ours:
            lines.append(f"{NOTE_SIG_PREFIX}{sig.name} {sig.base64}\n")
    message = text.encode("utf-8")
    for signer in signers:
        raw = signer.key_hash.to_bytes(4, "big") + signer.signer.sign(message)
        lines.append(f"{NOTE_SIG_PREFIX}{signer.name} {base64.b64encode(raw).decode('ascii')}\n")
    return text + "\n" + "".join(lines)
