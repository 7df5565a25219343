"""Signers, key ids, the key ring and the evidence_keygen command."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from missions.evidence.keys import Ed25519Signer, KeyLoadError, KeyRing, Signer, key_id_for, signer_from_settings


def test_key_id_is_first_8_bytes_of_sha256_of_the_raw_public_key() -> None:
    signer = Ed25519Signer.generate()
    assert (
        signer.key_id
        == hashlib.sha256(signer.public_key_bytes).digest()[:8].hex()
        == key_id_for(signer.public_key_bytes)
    )
    assert len(signer.key_id) == 16
    assert isinstance(signer, Signer)
    assert signer.key_id in repr(signer) and "PRIVATE" not in repr(signer)


def test_signer_from_env_accepts_seed_or_pem_and_rejects_garbage() -> None:
    seed = bytes(range(32))
    from_seed = Ed25519Signer.from_env({"EVIDENCE_SIGNING_KEY": base64.b64encode(seed).decode()})
    assert from_seed is not None
    assert from_seed.public_key_bytes == Ed25519Signer.from_seed(seed).public_key_bytes
    from_pem = Ed25519Signer.from_env({"EVIDENCE_SIGNING_KEY": from_seed.private_pem().decode()})
    assert from_pem is not None and from_pem.key_id == from_seed.key_id
    assert Ed25519Signer.from_env({}) is None
    with pytest.raises(KeyLoadError):
        Ed25519Signer.from_env({"EVIDENCE_SIGNING_KEY": "not base64!"})
    with pytest.raises(KeyLoadError):
        Ed25519Signer.from_env({"EVIDENCE_SIGNING_KEY": base64.b64encode(b"short").decode()})


def test_signer_from_pem_file_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings) -> None:  # type: ignore[no-untyped-def]
    signer = Ed25519Signer.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(signer.private_pem())
    assert Ed25519Signer.from_pem_file(path).key_id == signer.key_id
    monkeypatch.delenv("EVIDENCE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("EVIDENCE_SIGNING_KEY_FILE", raising=False)
    settings.EVIDENCE_SIGNING_KEY_FILE = str(path)
    assert signer_from_settings().key_id == signer.key_id
    settings.EVIDENCE_SIGNING_KEY_FILE = ""
    with pytest.raises(KeyLoadError, match="evidence_keygen"):
        signer_from_settings()
    with pytest.raises(KeyLoadError):
        Ed25519Signer.from_pem(signer.public_pem())


def test_keyring_keeps_retired_keys_for_verification(tmp_path: Path) -> None:
    old, new = Ed25519Signer.generate(), Ed25519Signer.generate()
    (tmp_path / "old.pub.pem").write_bytes(old.public_pem())
    (tmp_path / "new.pub.pem").write_bytes(new.public_pem())
    (tmp_path / "new.key.pem").write_bytes(new.private_pem())  # skipped, never loaded as a public key
    ring = KeyRing()
    ring.add_dir(tmp_path)
    assert set(ring) == {old.key_id, new.key_id}
    signature = old.sign(b"signed before rotation")
    assert ring.verify(old.key_id, signature, b"signed before rotation")
    assert not ring.verify(new.key_id, signature, b"signed before rotation")
    assert not ring.verify("0000000000000000", signature, b"signed before rotation")


def test_keyring_from_env() -> None:
    a, b = Ed25519Signer.generate(), Ed25519Signer.generate()
    ring = KeyRing()
    value = base64.b64encode(a.public_key_bytes).decode() + ", " + base64.b64encode(b.public_key_bytes).decode()
    ring.add_env({"EVIDENCE_PUBLIC_KEYS": value})
    assert ring.as_dict() == {a.key_id: a.public_key_bytes, b.key_id: b.public_key_bytes}
    with pytest.raises(KeyLoadError):
        ring.add_env({"EVIDENCE_PUBLIC_KEYS": "AAAA"})


def test_keygen_writes_a_private_key_0600_and_a_public_key(tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("evidence_keygen", "--out", str(tmp_path / "keys"), stdout=out)
    private = next((tmp_path / "keys").glob("*.key.pem"))
    public = next((tmp_path / "keys").glob("*.pub.pem"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signer = Ed25519Signer.from_pem_file(private)
    assert private.name == f"evidence-{signer.key_id}.key.pem"
    ring = KeyRing()
    ring.add_dir(tmp_path / "keys")
    assert list(ring) == [signer.key_id]
    assert public.name == f"evidence-{signer.key_id}.pub.pem"
    assert signer.key_id in out.getvalue()


def test_keygen_refuses_the_project_tree(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="inside the project tree"):
        call_command("evidence_keygen", "--out", str(Path(settings.BASE_DIR) / "keys"))
