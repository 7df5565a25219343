"""Signing keys for evidence: a small Signer interface, an Ed25519 implementation and a KeyRing.

Key id: lowercase hex of the first 8 bytes of SHA-256 over the raw 32-byte Ed25519 public key
(``key_id_for``). It names the key in DSSE signatures (``keyid``) and in bundles.

Private keys come from a PEM file or the ``EVIDENCE_SIGNING_KEY`` environment variable (base64
of the raw 32-byte seed, or a PKCS#8 PEM). They are never stored in the database or the repo.
A KMS can stand in for ``Ed25519Signer`` by implementing ``Signer`` (key_id, public_key_bytes,
sign). Rotation: the new key signs from now on; old public keys stay in the KeyRing (a directory
of public key files, or ``EVIDENCE_PUBLIC_KEYS``) so what they signed still verifies.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from missions.evidence.verify_core import ed25519_verify, key_id_for, public_key_from_pem

__all__ = [
    "ENV_PUBLIC_KEYS",
    "ENV_SIGNING_KEY",
    "Ed25519Signer",
    "KeyLoadError",
    "KeyRing",
    "Signer",
    "key_id_for",
    "keyring_from_settings",
    "signer_from_settings",
]

ENV_SIGNING_KEY = "EVIDENCE_SIGNING_KEY"
ENV_PUBLIC_KEYS = "EVIDENCE_PUBLIC_KEYS"


class KeyLoadError(ValueError):
    """A key could not be loaded."""


@runtime_checkable
class Signer(Protocol):
    """What the evidence code needs from a signing key; a KMS-backed class can implement it."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key_bytes(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


class Ed25519Signer:
    """An Ed25519 private key held in process memory."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def __repr__(self) -> str:  # never print key material
        return f"<Ed25519Signer {self.key_id}>"

    @property
    def key_id(self) -> str:
        return key_id_for(self._public)

    @property
    def public_key_bytes(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        if len(seed) != 32:
            raise KeyLoadError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, data: bytes) -> Ed25519Signer:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyLoadError(f"not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyLoadError("not an Ed25519 private key")
        return cls(key)

    @classmethod
    def from_pem_file(cls, path: str | Path) -> Ed25519Signer:
        return cls.from_pem(Path(path).read_bytes())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, var: str = ENV_SIGNING_KEY) -> Ed25519Signer | None:
        """The key in ``var`` (PEM, or base64 of the 32-byte seed); None when the variable is unset."""
        value = (os.environ if environ is None else environ).get(var, "").strip()
        if not value:
            return None
        if value.startswith("-----BEGIN"):
            return cls.from_pem(value.encode("ascii"))
        try:
            seed = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyLoadError(f"{var} is neither PEM nor base64") from exc
        return cls.from_seed(seed)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return public_key_pem(self._public)


def public_key_pem(public_key: bytes) -> bytes:
    return Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class KeyRing:
    """Published public keys by key id: the current one and every retired one still trusted."""

    def __init__(self, public_keys: Iterable[bytes] = ()) -> None:
        self._keys: dict[str, bytes] = {}
        for key in public_keys:
            self.add(key)

    def add(self, public_key: bytes) -> str:
        if len(public_key) != 32:
            raise KeyLoadError("an Ed25519 public key is 32 bytes")
        key_id = key_id_for(public_key)
        self._keys[key_id] = public_key
        return key_id

    def get(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def as_dict(self) -> dict[str, bytes]:
        return dict(self._keys)

    def verify(self, key_id: str, signature: bytes, data: bytes) -> bool:
        public_key = self._keys.get(key_id)
        return public_key is not None and ed25519_verify(public_key, signature, data)

    def add_dir(self, directory: str | Path) -> None:
        """Every ``*.pub.pem`` / ``*.pem`` public key file in ``directory`` (private key files are skipped)."""
        for path in sorted(Path(directory).glob("*.pem")):
            data = path.read_bytes()
            if b"PRIVATE KEY" in data:
                continue
            try:
                self.add(public_key_from_pem(data))
            except ValueError as exc:
                raise KeyLoadError(f"{path}: {exc}") from exc

    def add_paths(self, paths: Iterable[str | Path]) -> None:
        """Public key PEM files and directories of them (``--trusted-keys`` arguments)."""
        for path in map(Path, paths):
            if path.is_dir():
                self.add_dir(path)
                continue
            try:
                self.add(public_key_from_pem(path.read_bytes()))
            except ValueError as exc:
                raise KeyLoadError(f"{path}: {exc}") from exc

    def add_env(self, environ: Mapping[str, str] | None = None, var: str = ENV_PUBLIC_KEYS) -> None:
        """Base64 raw public keys separated by commas or whitespace."""
        value = (os.environ if environ is None else environ).get(var, "")
        for item in value.replace(",", " ").split():
            try:
                self.add(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise KeyLoadError(f"{var}: {item[:12]}... is not a base64 Ed25519 public key") from exc


def signer_from_settings() -> Ed25519Signer:
    """The console's evidence signing key: ``EVIDENCE_SIGNING_KEY`` (env) or ``settings.EVIDENCE_SIGNING_KEY_FILE``."""
    from django.conf import settings  # deferred: this module stays importable without Django

    signer = Ed25519Signer.from_env()
    if signer is not None:
        return signer
    path = getattr(settings, "EVIDENCE_SIGNING_KEY_FILE", "") or os.environ.get("EVIDENCE_SIGNING_KEY_FILE", "")
    if not path:
        raise KeyLoadError(
            "no evidence signing key: set EVIDENCE_SIGNING_KEY or EVIDENCE_SIGNING_KEY_FILE "
            "(create one with `manage.py evidence_keygen --out DIR`)"
        )
    return Ed25519Signer.from_pem_file(path)


def keyring_from_settings(signer: Signer | None = None) -> KeyRing:
    """Published keys: ``settings.EVIDENCE_PUBLIC_KEYS_DIR``, ``EVIDENCE_PUBLIC_KEYS`` and the current signer."""
    from django.conf import settings

    ring = KeyRing()
    directory = getattr(settings, "EVIDENCE_PUBLIC_KEYS_DIR", "") or os.environ.get("EVIDENCE_PUBLIC_KEYS_DIR", "")
    if directory:
        ring.add_dir(directory)
    ring.add_env()
    if signer is not None:
        ring.add(signer.public_key_bytes)
    return ring
