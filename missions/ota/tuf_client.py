"""The TUF client side: check a bootstrapped root, refresh a carrier's metadata with python-tuf's ``ngclient``.

Nothing here touches the database. ``ngclient.Updater`` runs the TUF client
workflow (specification section 5): root rotation, then timestamp, snapshot
and targets, each checked for signatures by the threshold of keys the
trusted root names, for expiry and against the versions already trusted. Those
trusted versions are the files of the local cache directory, one per carrier
and repository: a replayed older timestamp, snapshot or targets is refused
with ``BadVersionNumberError`` however validly it was signed.

Metadata comes over HTTP(S) (ngclient's urllib3 fetcher) or from a directory
(``file://``, through ``FileFetcher``): a carrier on a closed network can hand
its repository over as files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from securesystemslib.exceptions import UnverifiedSignatureError
from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

URL_SCHEMES = ("https", "http", "file")
ROOT_MAX_BYTES = 512_000  # ngclient's own bound for a root file
CHUNK_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 10

# Why a refresh failed. The security refusals say the carrier's supply chain cannot be trusted
# right now (they open the OTA-failure runbook); the others are an outage of the repository.
FAILURES: dict[str, str] = {
    "expired": "Metadata expired",
    "rollback": "Older metadata replayed (rollback)",
    "bad_signature": "Metadata not signed by the trusted keys",
    "hash_mismatch": "Metadata does not match its length or hashes",
    "invalid": "Metadata malformed or inconsistent",
    "unreachable": "Repository unreachable",
    "cache": "Local metadata cache not writable",
}
SECURITY_FAILURES = frozenset({"expired", "rollback", "bad_signature", "hash_mismatch", "invalid"})


class RootInvalid(ValueError):
    """A root an administrator tried to trust, refused; ``str(exc)`` says why."""


@dataclass
class RefreshFailed(Exception):
    """A refresh refused by the client; ``kind`` is a key of ``FAILURES``."""

    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


@dataclass
class RefreshResult:
    """What the verified top-level metadata says: versions, earliest expiry, targets by path."""

    versions: dict[str, int]
    expires_at: datetime
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)


def root_parse(text: str) -> tuple[bytes, str]:
    """Check the root metadata an administrator bootstraps; return its bytes and their SHA-256.

    It must be JSON, TUF root metadata, and signed by a threshold of its own
    root keys (a root that does not verify itself would fail the first refresh).
    It may be expired: the client then updates to a newer root from the repository.
    """
    data = text.strip().encode()
    if not data:
        raise RootInvalid("Paste the carrier's root.json.")
    if len(data) > ROOT_MAX_BYTES:
        raise RootInvalid(f"A root metadata file is at most {ROOT_MAX_BYTES} bytes.")
    try:
        json.loads(data)
    except ValueError as exc:
        raise RootInvalid(f"Not JSON: {exc}.") from None
    try:
        metadata = Metadata[Root].from_bytes(data)
    except DeserializationError as exc:
        raise RootInvalid(f"Not TUF metadata: {exc.__cause__ or exc}.") from None
    if not isinstance(metadata.signed, Root):
        raise RootInvalid(f"This is {metadata.signed.type} metadata, not root metadata.")
    try:
        metadata.signed.verify_delegate(Root.type, metadata.signed_bytes, metadata.signatures)
    except exceptions.UnsignedMetadataError as exc:
        raise RootInvalid(f"The root is not signed by its own root keys: {exc}.") from None
    return data, hashlib.sha256(data).hexdigest()


def url_check(url: str) -> str:
    """The metadata base URL, or ``ValueError`` naming what is wrong with it."""
    parts = urlsplit(url.strip())
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(f"Use an {', '.join(URL_SCHEMES)} URL.")
    if parts.scheme != "file" and not parts.netloc:
        raise ValueError("The URL names no host.")
    if parts.scheme == "file" and not parts.path.startswith("/"):
        raise ValueError("A file URL needs an absolute path (file:///srv/tuf/metadata/).")
    if parts.query or parts.fragment:
        raise ValueError("The URL must not carry a query or fragment.")
    return url.strip()


class FileFetcher(FetcherInterface):
    """Reads ``file://`` URLs from a local directory; a missing file answers like HTTP 404.

    ngclient stops looking for newer root versions at a 404, so a missing file
    must look like one rather than like an outage.
    """

    def _fetch(self, url: str) -> Iterator[bytes]:
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise exceptions.DownloadError(f"not a file URL: {url}")
        path = Path(unquote(parts.path))
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise exceptions.DownloadHTTPError(f"{path} not found", 404) from None
        except OSError as exc:
            raise exceptions.DownloadError(f"{path}: {exc.strerror}") from None
        return self._chunks(handle)

    @staticmethod
    def _chunks(handle: Any) -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk


def fetcher_for(url: str) -> FetcherInterface:
    if urlsplit(url).scheme == "file":
        return FileFetcher()
    return Urllib3Fetcher(socket_timeout=FETCH_TIMEOUT_SECONDS, app_user_agent="tms-console")


def cache_clear(cache_dir: Path) -> None:
    """Forget the trusted metadata (a new root was bootstrapped: the old versions say nothing about it)."""
    shutil.rmtree(cache_dir, ignore_errors=True)


def repository_refresh(*, metadata_url: str, trusted_root: bytes, cache_dir: Path) -> RefreshResult:
    """Refresh the top-level metadata from ``metadata_url``; raise ``RefreshFailed`` with the reason."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        updater = Updater(
            metadata_dir=str(cache_dir),
            metadata_base_url=metadata_url,
            fetcher=fetcher_for(metadata_url),
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=trusted_root,
        )
        updater.refresh()
        return _read_verified(cache_dir)
    except exceptions.ExpiredMetadataError as exc:
        raise RefreshFailed("expired", str(exc)) from exc
    except exceptions.BadVersionNumberError as exc:
        raise RefreshFailed("rollback", str(exc)) from exc
    except (exceptions.UnsignedMetadataError, UnverifiedSignatureError) as exc:
        raise RefreshFailed("bad_signature", str(exc)) from exc
    except exceptions.LengthOrHashMismatchError as exc:
        raise RefreshFailed("hash_mismatch", str(exc)) from exc
    except exceptions.DownloadError as exc:
        cause = exc.__cause__
        raise RefreshFailed("unreachable", f"{exc}{f' ({cause})' if cause else ''}") from exc
    except (exceptions.RepositoryError, DeserializationError, ValueError) as exc:
        raise RefreshFailed("invalid", str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise RefreshFailed("cache", f"{cache_dir}: {exc.strerror or exc}") from exc


def _read_verified(cache_dir: Path) -> RefreshResult:
    """The top-level metadata ngclient has just verified and written to the cache."""
    root = Metadata[Root].from_bytes((cache_dir / "root.json").read_bytes()).signed
    timestamp = Metadata[Timestamp].from_bytes((cache_dir / "timestamp.json").read_bytes()).signed
    snapshot = Metadata[Snapshot].from_bytes((cache_dir / "snapshot.json").read_bytes()).signed
    targets = Metadata[Targets].from_bytes((cache_dir / "targets.json").read_bytes()).signed
    listed: dict[str, dict[str, Any]] = {}
    for path, target in targets.targets.items():
        custom = target.custom if isinstance(target.custom, dict) else {}
        counter = custom.get("release_counter")
        vehicles = custom.get("vehicle_ids")
        listed[path] = {
            "length": target.length,
            "sha256": target.hashes.get("sha256", ""),
            "release_counter": counter if isinstance(counter, int) and not isinstance(counter, bool) else None,
            "vehicle_ids": [v for v in vehicles if isinstance(v, str)] if isinstance(vehicles, list) else None,
        }
    roles = (root, timestamp, snapshot, targets)
    return RefreshResult(
        versions={role.type: role.version for role in roles},
        expires_at=min(role.expires for role in roles),
        targets=listed,
    )


def cache_dir_for(base: Path, carrier_slug: str, role: str) -> Path:
    # Slugs are [-a-zA-Z0-9_]: safe as a directory name; the role is one of two fixed words.
    return base / os.path.basename(carrier_slug) / role
