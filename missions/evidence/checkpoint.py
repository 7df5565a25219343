"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the signed tree head of the evidence log.

Body: origin line, decimal tree size, base64 RFC 6962 root hash, optional extension lines; the
body is the text of a signed note whose key name is the origin.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from missions.evidence.note import NoteSigner, NoteVerifier, note_open, note_sign
from missions.evidence.verify_core import HASH_SIZE, Checkpoint, CheckpointError, checkpoint_parse, note_text_is_valid

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "checkpoint_format",
    "checkpoint_open",
    "checkpoint_parse",
    "checkpoint_sign",
]


def checkpoint_format(checkpoint: Checkpoint) -> str:
    """The note text: origin, tree size, base64 root hash, extension lines, each ending in a newline."""
    for line in (checkpoint.origin, *checkpoint.extensions):
        if not line or "\n" in line or not note_text_is_valid(line):
            raise CheckpointError("checkpoint lines must be non-empty single lines")
    if checkpoint.size < 0 or len(checkpoint.root_hash) != HASH_SIZE:
        raise CheckpointError("bad tree size or root hash")
    root = base64.b64encode(checkpoint.root_hash).decode("ascii")
    return "\n".join([checkpoint.origin, str(checkpoint.size), root, *checkpoint.extensions]) + "\n"


def checkpoint_sign(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a signed note; the log key's name must be the origin."""
    if signer.name != checkpoint.origin:
        raise CheckpointError(f"log key name {signer.name!r} differs from the origin {checkpoint.origin!r}")
    return note_sign(checkpoint_format(checkpoint), [signer])


def checkpoint_open(signed: str | bytes, verifiers: Iterable[NoteVerifier]) -> Checkpoint:
    """Verify the note signature (raises NoteError) and parse the body (raises CheckpointError)."""
    note = note_open(signed, verifiers)
    checkpoint = checkpoint_parse(note.text)
    if not any(sig.name == checkpoint.origin for sig in note.sigs):
        raise CheckpointError("no verified signature by a key named after the origin")
    return checkpoint
