"""Evidence bundles: one JSON file a partner can verify offline (see docs/evidence.md).

A bundle carries the DSSE statements, each with its log leaf index and inclusion proof, the
telemetry snapshots as JSON lines, the signed checkpoint the proofs lead to, and the public keys.
``bundle_verify`` (from ``verify_core``, shared with ``tools/verify_evidence.py``) checks it all.

``InMemoryLog`` is the log's logic without storage: leaf = leaf_hash(SHA-256(PAE(statement))),
checkpoints signed as C2SP notes, proofs from the stored leaf hashes. A database-backed log
feeds the same functions a sequence of leaf hashes read from its table.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from missions.evidence import merkle
from missions.evidence.checkpoint import checkpoint_sign
from missions.evidence.keys import KeyRing, Signer
from missions.evidence.note import NoteSigner
from missions.evidence.verify_core import (
    BUNDLE_FORMAT,
    SNAPSHOT_MEDIA_TYPE,
    Checkpoint,
    VerifyReport,
    envelope_parse,
    key_id_for,
    leaf_hash,
    statement_digest,
)
from missions.evidence.verify_core import bundle_verify as _bundle_verify

__all__ = [
    "BUNDLE_FORMAT",
    "InMemoryLog",
    "LoggedStatement",
    "Snapshot",
    "VerifyReport",
    "bundle_build",
    "bundle_verify",
    "envelope_leaf_hash",
]


def envelope_leaf_hash(envelope: Mapping[str, Any]) -> bytes:
    """The Merkle leaf hash that logs an envelope: leaf_hash(SHA-256(PAE(payloadType, payload)))."""
    parsed = envelope_parse(envelope)
    return leaf_hash(statement_digest(parsed.payload_type, parsed.payload))


@dataclass(frozen=True)
class LoggedStatement:
    """A signed statement with where it sits in the log and the proof that it does."""

    envelope: Mapping[str, Any]
    leaf_index: int
    tree_size: int
    inclusion_proof: Sequence[bytes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "envelope": dict(self.envelope),
            "log": {
                "leaf_index": self.leaf_index,
                "tree_size": self.tree_size,
                "inclusion_proof": [base64.b64encode(h).decode("ascii") for h in self.inclusion_proof],
            },
        }


@dataclass(frozen=True)
class Snapshot:
    """Frozen telemetry events as JSON lines (``dsse.snapshot_encode``), named as in its statement subject.

    ``content=None`` marks a snapshot whose raw events were purged under the retention policy:
    its attested hash still verifies in the log, the events can no longer be shown.
    """

    name: str
    content: str | None

    def as_dict(self) -> dict[str, Any]:
        if self.content is None:
            return {"name": self.name, "media_type": SNAPSHOT_MEDIA_TYPE, "content": None, "purged": True}
        return {"name": self.name, "media_type": SNAPSHOT_MEDIA_TYPE, "content": self.content}


def bundle_build(
    *,
    subject: str,
    statements: Sequence[LoggedStatement],
    checkpoint_note: str,
    public_keys: Iterable[bytes],
    snapshots: Sequence[Snapshot] = (),
) -> bytes:
    """Serialise a bundle (UTF-8 JSON).

    ``subject`` is what the bundle is about, e.g. ``urn:tms-console:mission:42``; it must be the
    subject of one of the statements. Every field is checked by the verifier, so nothing in the
    file can change unnoticed (no unauthenticated timestamps or labels).
    """
    document = {
        "format": BUNDLE_FORMAT,
        "subject": subject,
        "public_keys": [
            {"key_id": key_id_for(k), "algorithm": "ed25519", "public_key": base64.b64encode(k).decode("ascii")}
            for k in dict.fromkeys(public_keys)
        ],
        "checkpoint": checkpoint_note,
        "statements": [s.as_dict() for s in statements],
        "snapshots": [s.as_dict() for s in snapshots],
    }
    return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def bundle_verify(bundle: bytes | str, trusted_keys: KeyRing | Mapping[str, bytes] | None = None) -> VerifyReport:
    """Verify everything in a bundle; see ``verify_core.bundle_verify``."""
    keys = trusted_keys.as_dict() if isinstance(trusted_keys, KeyRing) else trusted_keys
    return _bundle_verify(bundle, keys)


@dataclass
class InMemoryLog:
    """An append-only Merkle log of statement hashes, held in memory."""

    origin: str
    signer: Signer
    leaves: list[bytes] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def append(self, envelope: Mapping[str, Any]) -> int:
        self.leaves.append(envelope_leaf_hash(envelope))
        return len(self.leaves) - 1

    def checkpoint(self, size: int | None = None) -> str:
        size = self.size if size is None else size
        body = Checkpoint(self.origin, size, merkle.tree_root(self.leaves, size))
        return checkpoint_sign(body, NoteSigner(self.origin, self.signer))

    def logged(self, envelope: Mapping[str, Any], index: int, size: int | None = None) -> LoggedStatement:
        size = self.size if size is None else size
        if self.leaves[index] != envelope_leaf_hash(envelope):
            raise ValueError(f"leaf {index} does not log this envelope")
        return LoggedStatement(envelope, index, size, merkle.inclusion_proof(self.leaves, index, size))

    def consistency(self, size1: int, size2: int | None = None) -> list[bytes]:
        return merkle.consistency_proof(self.leaves, size1, size2)
