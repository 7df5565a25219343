"""C2SP tlog-checkpoint bodies and signed checkpoints."""

from __future__ import annotations

import pytest

from missions.evidence.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_format,
    checkpoint_open,
    checkpoint_parse,
    checkpoint_sign,
)
from missions.evidence.keys import Ed25519Signer
from missions.evidence.merkle import leaf_hash
from missions.evidence.note import InvalidNoteSignatureError, NoteSigner, UnverifiedNoteError
from tests.evidence import vectors_signed_note as v


def test_tree_note_vector_formats_and_parses() -> None:
    checkpoint = Checkpoint("go.sum database tree", v.TREE_NOTE_SIZE, leaf_hash(v.TREE_NOTE_RECORD))
    assert checkpoint_format(checkpoint) == v.TREE_NOTE_BODY
    assert checkpoint_parse(v.TREE_NOTE_BODY) == checkpoint


@pytest.mark.parametrize(
    "body",
    [
        *v.BAD_TREE_NOTE_BODIES,
        "origin\n12\n",  # too few lines
        "origin\n012\n" + "A" * 43 + "=\n",  # leading zero
        "origin\n12\n" + "A" * 43 + "=\n\nextension\n",  # empty line
        "origin\n12\n" + "A" * 43 + "=",  # no final newline
        "origin\n12\nAAAA\n",  # root of the wrong length
    ],
)
def test_bad_bodies_are_rejected(body: str) -> None:
    with pytest.raises(CheckpointError):
        checkpoint_parse(body)


def test_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint("example.com/log", 0, bytes(32), ("ext one", "ext two"))
    assert checkpoint_parse(checkpoint_format(checkpoint)) == checkpoint


def test_signed_checkpoint_round_trip_and_failures() -> None:
    signer = NoteSigner("tms-console.example/evidence", Ed25519Signer.generate())
    checkpoint = Checkpoint(signer.name, 9, leaf_hash(b"x"))
    signed = checkpoint_sign(checkpoint, signer)
    assert signed.startswith(checkpoint_format(checkpoint) + "\n\u2014 tms-console.example/evidence ")
    assert checkpoint_open(signed, [signer.verifier]) == checkpoint
    stranger = NoteSigner(signer.name, Ed25519Signer.generate())
    with pytest.raises(UnverifiedNoteError):
        checkpoint_open(signed, [stranger.verifier])
    tampered = signed.replace("\n9\n", "\n10\n")
    with pytest.raises(InvalidNoteSignatureError):
        checkpoint_open(tampered, [signer.verifier])
    with pytest.raises(CheckpointError):
        checkpoint_sign(checkpoint, NoteSigner("other.example/log", signer.signer))
