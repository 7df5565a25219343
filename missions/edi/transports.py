"""How interchanges travel: a local folder pair (the embedded default) or HTTPS POST.

Folder transport, per carrier under ``EDI_DIR/<carrier slug>/``: the console
writes to ``outbound/`` (204s, 997s) and reads from ``inbound/`` (990s, 214s,
997s), moving each file it read to ``inbound/processed/``. An SFTP drop folder
is the same pair mounted or synchronised from the partner's server; AS2 is out
of scope (docs/decisions/0027-edi-x12.md).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
from django.conf import settings

from missions.models.edi import EdiPartner, EdiTransport
from missions.tendering.carrier_client import CarrierError

MEDIA_TYPE = "application/edi-x12"


class TransportError(CarrierError):
    """The interchange could not be handed over; nothing reached the partner."""


def partner_dir(partner: EdiPartner) -> Path:
    return Path(settings.EDI_DIR) / partner.carrier.slug


def outbound_dir(partner: EdiPartner) -> Path:
    return partner_dir(partner) / "outbound"


def inbound_dir(partner: EdiPartner) -> Path:
    return partner_dir(partner) / "inbound"


def file_write_atomic(folder: Path, name: str, text: str) -> Path:
    """Write then rename, so a reader polling the folder never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        target = folder / name
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def transport_send(partner: EdiPartner, *, text: str, name: str) -> tuple[str, str]:
    """Hand an interchange to the partner; returns (where it went, any X12 the partner answered with)."""
    if partner.transport == EdiTransport.FOLDER:
        try:
            path = file_write_atomic(outbound_dir(partner), name, text)
        except OSError as exc:
            raise TransportError(f"could not write {name}: {exc}") from exc
        return str(path), ""
    if partner.transport == EdiTransport.HTTPS:
        try:
            response = httpx.post(
                partner.https_url,
                content=text.encode("utf-8"),
                headers={"Content-Type": MEDIA_TYPE, "User-Agent": "tms-console/1.0"},
                timeout=float(settings.EDI_HTTP_TIMEOUT_SECONDS),
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"POST {partner.https_url} failed: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise TransportError(f"POST {partner.https_url} answered HTTP {response.status_code}")
        body = response.text.strip()
        return partner.https_url, body if body.startswith("ISA") else ""
    raise TransportError(f"unknown transport '{partner.transport}'")


def inbound_files(partner: EdiPartner) -> list[Path]:
    """Files waiting in the partner's inbound folder, oldest first (temporary files skipped)."""
    folder = inbound_dir(partner)
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def inbound_file_done(path: Path) -> Path:
    done = path.parent / "processed"
    done.mkdir(exist_ok=True)
    target = done / path.name
    os.replace(path, target)
    return target
