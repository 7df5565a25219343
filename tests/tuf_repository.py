"""A carrier's TUF repository built in the test: keys generated here, metadata written to a directory.

Uses python-tuf's Metadata API. Metadata is not written with consistent
snapshots (plain ``timestamp.json``, ``snapshot.json``, ``targets.json``),
roots as ``<version>.root.json`` as the client looks for them. ``saved()``
keeps the bytes of the published files so a test can replay an older set.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)


def in_days(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


class TufRepository:
    """root, targets, snapshot and timestamp, one fresh Ed25519 key per role."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.signers: dict[str, Signer] = {role: CryptoSigner.generate_ed25519() for role in ROLES}
        root = Root(expires=in_days(365), consistent_snapshot=False)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self.targets = Metadata(Targets(expires=in_days(30)))
        self.snapshot = Metadata(Snapshot(expires=in_days(7)))
        self.timestamp = Metadata(Timestamp(expires=in_days(1)))
        self._sign_write(self.root, Root.type, f"{root.version}.root.json")

    @property
    def url(self) -> str:
        return self.dir.as_uri() + "/"

    def root_json(self) -> str:
        return self.root.to_bytes(JSONSerializer(compact=False)).decode()

    def add_target(
        self, path: str, *, release_counter: int | None = None, vehicle_ids: list[str] | None = None, data: bytes = b""
    ) -> None:
        content = data or f"image {path}".encode()
        custom: dict[str, Any] = {}
        if release_counter is not None:
            custom["release_counter"] = release_counter
        if vehicle_ids is not None:
            custom["vehicle_ids"] = vehicle_ids
        self.targets.signed.targets[path] = TargetFile(
            length=len(content),
            hashes={"sha256": hashlib.sha256(content).hexdigest()},
            path=path,
            unrecognized_fields={"custom": custom} if custom else None,
        )

    def remove_target(self, path: str) -> None:
        del self.targets.signed.targets[path]

    def publish(
        self,
        *,
        timestamp_expires: datetime | None = None,
        targets_expires: datetime | None = None,
        wrong_key_for: str = "",
    ) -> None:
        """Sign and write targets, snapshot and timestamp as new versions (the first publish is version 1)."""
        first = not (self.dir / "timestamp.json").exists()
        t, s, ts = self.targets.signed, self.snapshot.signed, self.timestamp.signed
        if not first:
            t.version += 1
            s.version += 1
            ts.version += 1
        t.expires = targets_expires or in_days(30)
        ts.expires = timestamp_expires or in_days(1)
        s.meta["targets.json"] = MetaFile(version=t.version)
        ts.snapshot_meta = MetaFile(version=s.version)
        for md, role in (
            (self.targets, Targets.type),
            (self.snapshot, Snapshot.type),
            (self.timestamp, Timestamp.type),
        ):
            signer = CryptoSigner.generate_ed25519() if role == wrong_key_for else self.signers[role]
            self._sign_write(md, role, f"{role}.json", signer=signer)

    def saved(self) -> dict[str, bytes]:
        return {name: (self.dir / name).read_bytes() for name in ("timestamp.json", "snapshot.json", "targets.json")}

    def restore(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            (self.dir / name).write_bytes(data)

    def _sign_write(self, md: Metadata[Any], role: str, name: str, *, signer: Signer | None = None) -> None:
        md.signatures.clear()
        md.sign(signer or self.signers[role], append=False)
        (self.dir / name).write_bytes(md.to_bytes(JSONSerializer(compact=False)))
