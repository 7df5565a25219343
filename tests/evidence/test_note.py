"""C2SP signed notes against the golang.org/x/mod/sumdb/note vectors (see vectors_signed_note.py)."""

from __future__ import annotations

import pytest

from missions.evidence.keys import Ed25519Signer
from missions.evidence.note import (
    InvalidNoteSignatureError,
    MalformedNoteError,
    NoteError,
    NoteSignature,
    NoteSigner,
    UnverifiedNoteError,
    note_key_hash,
    note_open,
    note_sign,
    signer_key_format,
    signer_key_parse,
    verifier_key_format,
    verifier_key_parse,
)
from tests.evidence import vectors_signed_note as v

PETER = verifier_key_parse(v.PETER_VKEY)
ENOCH = verifier_key_parse(v.ENOCH_VKEY)


def test_verifier_key_vector_parses_and_key_hash_is_computed() -> None:
    assert PETER.name == "PeterNeumann"
    assert PETER.key_hash == v.PETER_KEY_HASH
    assert note_key_hash("PeterNeumann", PETER.public_key) == v.PETER_KEY_HASH
    assert verifier_key_format("PeterNeumann", PETER.public_key) == v.PETER_VKEY


def test_signer_key_vector_matches_the_verifier_key() -> None:
    signer = signer_key_parse(v.PETER_SKEY)
    assert signer.key_hash == v.PETER_KEY_HASH
    assert signer.verifier == PETER
    seed_signer = signer.signer
    assert isinstance(seed_signer, Ed25519Signer)


def test_sign_reproduces_the_published_signed_note() -> None:
    signer = signer_key_parse(v.PETER_SKEY)
    assert note_sign(v.TEXT, [signer]) == v.SIGNED
    # An existing signature by the same key is replaced, not duplicated.
    stale = NoteSignature("PeterNeumann", v.PETER_KEY_HASH, "BADSIGN=")
    assert note_sign(v.TEXT, [signer], existing=[stale]) == v.SIGNED


def test_sign_refuses_text_without_final_newline() -> None:
    with pytest.raises(MalformedNoteError):
        note_sign("abc", [signer_key_parse(v.PETER_SKEY)])


def test_every_mangled_verifier_key_is_rejected() -> None:
    key = v.PETER_VKEY.encode()
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                with pytest.raises(ValueError):
                    verifier_key_parse(key[i:j].decode())
    for i in range(len(key)):
        mangled = bytearray(key)
        mangled[i] += 1
        with pytest.raises(ValueError):
            verifier_key_parse(mangled.decode())
    for bad in v.BAD_VKEYS:
        with pytest.raises(ValueError):
            verifier_key_parse(bad)


def test_every_mangled_signer_key_is_rejected() -> None:
    key = v.PETER_SKEY.encode()
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                with pytest.raises(ValueError):
                    signer_key_parse(key[i:j].decode())
    for i in range(len(key)):
        mangled = bytearray(key)
        mangled[i] += 1
        with pytest.raises(ValueError):
            signer_key_parse(mangled.decode())


def test_open_verifies_known_key_and_keeps_unknown_signature_unverified() -> None:
    message = v.TEXT + "\n" + v.PETER_SIG + v.ENOCH_SIG
    note = note_open(message.encode(), [PETER])
    assert note.text == v.TEXT
    assert [s.name for s in note.sigs] == ["PeterNeumann"]
    assert note.sigs[0].base64 == v.PETER_SIG_B64
    assert [(s.name, s.key_hash) for s in note.unverified_sigs] == [("EnochRoot", v.ENOCH_KEY_HASH)]
    both = note_open(message, [PETER, ENOCH])
    assert [s.name for s in both.sigs] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified_sigs == ()


def test_open_without_known_keys_is_unverified() -> None:
    with pytest.raises(UnverifiedNoteError, match="note has no verifiable signatures") as info:
        note_open(v.TEXT + "\n" + v.PETER_SIG + v.ENOCH_SIG, [])
    assert len(info.value.note.unverified_sigs) == 2


def test_open_with_duplicated_verifier_is_ambiguous_only_when_used() -> None:
    other = NoteSigner("EnochRoot", Ed25519Signer.generate()).verifier
    clash = type(ENOCH)(ENOCH.name, ENOCH.key_hash, other.public_key)
    with pytest.raises(NoteError, match="ambiguous key EnochRoot\\+af0cfe78"):
        note_open(v.TEXT + "\n" + v.ENOCH_SIG, [ENOCH, PETER, clash])
    note_open(v.TEXT + "\n" + v.PETER_SIG, [ENOCH, PETER, clash])


def test_open_rejects_too_many_signatures() -> None:
    with pytest.raises(MalformedNoteError):
        note_open(v.TEXT + "\n" + v.PETER_SIG * 101, [PETER])
    note_open(v.TEXT + "\n" + v.PETER_SIG * 16, [PETER])  # C2SP: accept at least 16


def test_open_rejects_an_invalid_signature_by_a_known_key() -> None:
    broken = v.PETER_SIG[:60] + "ABCD" + v.PETER_SIG[60:]
    with pytest.raises(InvalidNoteSignatureError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        note_open(v.TEXT + "\n" + broken, [PETER])


def test_open_keeps_duplicates_once() -> None:
    broken_enoch = v.ENOCH_SIG[:60] + "ABCD" + v.ENOCH_SIG[60:]
    message = v.TEXT + "\n" + v.PETER_SIG + v.PETER_SIG + v.ENOCH_SIG + v.ENOCH_SIG + broken_enoch
    note = note_open(message, [PETER])
    assert [s.name for s in note.sigs] == ["PeterNeumann"]
    assert [s.base64 for s in note.unverified_sigs] == [v.ENOCH_SIG_B64, broken_enoch[len("— EnochRoot ") : -1]]


@pytest.mark.parametrize("message", v.BAD_MESSAGES)
def test_open_rejects_malformed_messages(message: bytes) -> None:
    with pytest.raises(MalformedNoteError):
        note_open(message, [PETER])


def test_open_ignores_misnamed_or_rehashed_signatures() -> None:
    misnamed = v.PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(UnverifiedNoteError):
        note_open(v.TEXT + "\n" + misnamed, [PETER])
    wrong_hash = v.PETER_SIG.replace("x08g", "xxxx")
    with pytest.raises(UnverifiedNoteError):
        note_open(v.TEXT + "\n" + wrong_hash, [PETER])


def test_round_trip_with_a_generated_key_and_text_with_blank_lines() -> None:
    signer = NoteSigner("tms-console.example/evidence", Ed25519Signer.generate())
    text = "first\n\nthird after a blank line\n"
    note = note_open(note_sign(text, [signer]), [signer.verifier])
    assert note.text == text


def test_signer_key_format_round_trips() -> None:
    seed = bytes(range(32))
    parsed = signer_key_parse(signer_key_format("example.com/log", seed))
    assert parsed.name == "example.com/log"
    assert parsed.signer.public_key_bytes == Ed25519Signer.from_seed(seed).public_key_bytes
