"""The only code that writes OTA state: repositories an administrator configures, refreshes, software checks.

* ``ota_repository_configure``: an administrator trusts a carrier's root metadata for one repository.
* ``ota_repository_refresh``: the client refreshes the metadata (beat task ``missions.ota.refresh_all``,
  ``manage.py ota_refresh``), records a changed outcome, then re-checks the carrier's vehicles: a version
  the new metadata signs is verified, one it dropped is refused.
* ``vehicle_software_check``: a vehicle's reported version against the carrier's current metadata
  (``missions.ota.verify``). A refusal records ``vehicle.software_refused``: the runbooks app opens the
  OTA-failure incident for the carrier and its runbook pauses the fleet.

The network is never used inside a transaction: the refresh runs first, its outcome is written after.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from missions.events import Actor, event_record
from missions.models import (
    Carrier,
    CarrierOtaRepository,
    OtaRepositoryRole,
    SoftwareStatus,
    Vehicle,
    VehicleSoftware,
)
from missions.ota import tuf_client
from missions.ota.verify import software_verdict
from tms_console.domain import DomainError

log = logging.getLogger(__name__)
OTA = Actor.system("ota")


def cache_dir(repo: CarrierOtaRepository) -> Path:
    return tuf_client.cache_dir_for(Path(settings.OTA_CACHE_DIR), repo.carrier.slug, repo.role)


@transaction.atomic
def ota_repository_configure(
    *, carrier_id: int, role: str, metadata_url: str, trusted_root: str, actor: Actor
) -> CarrierOtaRepository:
    """Trust ``trusted_root`` for the carrier's ``role`` repository at ``metadata_url``.

    A new root (another SHA-256) forgets the cached metadata: the versions
    trusted under the old root say nothing about a repository it did not sign.
    """
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if role not in OtaRepositoryRole.values:
        raise DomainError(f"Unknown repository role {role!r}.", field="role")
    try:
        url = tuf_client.url_check(metadata_url)
    except ValueError as exc:
        raise DomainError(str(exc), field="metadata_url") from None
    try:
        data, sha256 = tuf_client.root_parse(trusted_root)
    except tuf_client.RootInvalid as exc:
        raise DomainError(str(exc), field="trusted_root") from None
    repo = CarrierOtaRepository.objects.filter(carrier=carrier, role=role).first()
    before = {"metadata_url": repo.metadata_url, "root_sha256": repo.root_sha256} if repo else None
    if repo is None:
        repo = CarrierOtaRepository(carrier=carrier, role=role)
    if repo.root_sha256 != sha256:
        tuf_client.cache_clear(cache_dir(repo))
        repo.refresh_ok, repo.verified_at, repo.versions, repo.targets, repo.expires_at = False, None, {}, {}, None
        repo.failure_kind = repo.failure_reason = ""
    repo.metadata_url, repo.trusted_root, repo.root_sha256 = url, data.decode(), sha256
    repo.configured_at = timezone.now()
    repo.save()
    event_record(
        actor=actor,
        action="ota_repository.configured",
        subject_type="ota_repository",
        subject_id=repo.pk,
        before=before,
        after={"metadata_url": url, "root_sha256": sha256},
        data={"role": role, "metadata_url": url, "root_sha256": sha256},
        carrier=carrier,
    )
    return repo


def ota_repository_refresh(*, repository_id: int, actor: Actor = OTA) -> CarrierOtaRepository:
    """Refresh one repository's metadata, record what changed, re-check the carrier's vehicles."""
    repo = CarrierOtaRepository.objects.select_related("carrier").get(pk=repository_id)
    try:
        result = tuf_client.repository_refresh(
            metadata_url=repo.metadata_url, trusted_root=repo.trusted_root.encode(), cache_dir=cache_dir(repo)
        )
    except tuf_client.RefreshFailed as failed:
        _refresh_failed(repo_id=repo.pk, kind=failed.kind, reason=failed.reason, actor=actor)
    else:
        # The local cache is ngclient's rollback protection; a process whose cache is new (another
        # pod, a wiped volume) has only the versions the database recorded to hold the line.
        older = _older_than_recorded(recorded=repo.versions, verified=result.versions)
        if older:
            _refresh_failed(repo_id=repo.pk, kind="rollback", reason=older, actor=actor)
        else:
            _refreshed(repo_id=repo.pk, result=result, actor=actor)
    carrier_software_recheck(carrier_id=repo.carrier_id)
    repo.refresh_from_db()
    return repo


def _older_than_recorded(*, recorded: dict[str, int], verified: dict[str, int]) -> str:
    """Why the metadata just verified is older than what was trusted before ("" when it is not)."""
    older = [
        f"{role} version {verified[role]} after version {recorded[role]}"
        for role in sorted(recorded)
        if role in verified and int(verified[role]) < int(recorded[role])
    ]
    return ("Older metadata replayed (rollback): " + ", ".join(older)) if older else ""


@transaction.atomic
def _refreshed(*, repo_id: int, result: tuf_client.RefreshResult, actor: Actor) -> None:
    repo = CarrierOtaRepository.objects.select_for_update().select_related("carrier").get(pk=repo_id)
    now = timezone.now()
    changed = not repo.refresh_ok or repo.versions != result.versions
    before = {"refresh_ok": repo.refresh_ok, "versions": repo.versions, "failure_kind": repo.failure_kind}
    repo.refreshed_at = repo.verified_at = now
    repo.refresh_ok, repo.failure_kind, repo.failure_reason = True, "", ""
    repo.versions, repo.expires_at, repo.targets = result.versions, result.expires_at, result.targets
    repo.save()
    if changed:
        event_record(
            actor=actor,
            action="ota_repository.refreshed",
            subject_type="ota_repository",
            subject_id=repo.pk,
            before=before,
            after={"refresh_ok": True, "versions": result.versions},
            data={
                "role": repo.role,
                "versions": result.versions,
                "expires_at": result.expires_at.isoformat(),
                "targets": len(result.targets),
            },
            carrier=repo.carrier,
        )


@transaction.atomic
def _refresh_failed(*, repo_id: int, kind: str, reason: str, actor: Actor) -> None:
    repo = CarrierOtaRepository.objects.select_for_update().select_related("carrier").get(pk=repo_id)
    # A repeated failure for the same cause is one event; the page shows the latest time and message.
    changed = repo.refresh_ok or repo.failure_kind != kind
    before = {"refresh_ok": repo.refresh_ok, "failure_kind": repo.failure_kind}
    repo.refreshed_at = timezone.now()
    repo.refresh_ok, repo.failure_kind, repo.failure_reason = False, kind, reason[:500]
    repo.save(update_fields=["refreshed_at", "refresh_ok", "failure_kind", "failure_reason"])
    log.warning("ota refresh failed", extra={"carrier": repo.carrier.slug, "role": repo.role, "kind": kind})
    if changed:
        event_record(
            actor=actor,
            action="ota_repository.refresh_failed",
            subject_type="ota_repository",
            subject_id=repo.pk,
            before=before,
            after={"refresh_ok": False, "failure_kind": kind},
            data={
                "role": repo.role,
                "kind": kind,
                "reason": reason[:500],
                "security": kind in tuf_client.SECURITY_FAILURES,
            },
            carrier=repo.carrier,
        )


def ota_refresh_all(*, actor: Actor = OTA) -> dict[str, int]:
    """Refresh every configured repository; one failing never stops the others."""
    counts = {"ok": 0, "failed": 0}
    for repo_id in CarrierOtaRepository.objects.order_by("carrier_id", "role").values_list("id", flat=True):
        repo = ota_repository_refresh(repository_id=repo_id, actor=actor)
        counts["ok" if repo.refresh_ok else "failed"] += 1
    return counts


@transaction.atomic
def vehicle_software_check(
    *, vehicle_id: int, version: str, reported_at: datetime, actor: Actor = OTA
) -> VehicleSoftware:
    """Decide whether the vehicle's version is backed by the carrier's metadata; record a changed outcome."""
    vehicle = Vehicle.objects.select_related("carrier").get(pk=vehicle_id)
    row = VehicleSoftware.objects.select_for_update().filter(vehicle=vehicle).first()
    repos = {r.role: r for r in CarrierOtaRepository.objects.filter(carrier_id=vehicle.carrier_id)}
    now = timezone.now()
    verdict = software_verdict(
        version=version,
        vehicle_external_id=vehicle.external_id,
        image=repos.get(OtaRepositoryRole.IMAGE),
        director=repos.get(OtaRepositoryRole.DIRECTOR),
        last_verified_version=row.verified_version if row else "",
        last_release_counter=row.release_counter if row else None,
        now=now,
    )
    status = SoftwareStatus.VERIFIED if verdict.verified else SoftwareStatus.REFUSED
    before = {"version": row.version, "status": row.status, "reason_code": row.reason_code} if row else None
    if row is None:
        row = VehicleSoftware(vehicle=vehicle)
    row.version, row.status, row.reason_code, row.reason = version, status, verdict.code, verdict.reason
    row.reported_at = max(reported_at, row.reported_at) if row.pk else reported_at
    row.checked_at = now
    if verdict.verified:
        row.verified_version = version
        if verdict.release_counter is not None:
            row.release_counter = verdict.release_counter
    row.save()
    if before == {"version": version, "status": status, "reason_code": verdict.code}:
        return row
    data: dict[str, Any] = {"vehicle_id": vehicle.external_id, "version": version}
    if verdict.verified:
        data["release_counter"] = verdict.release_counter
    else:
        data.update(code=verdict.code, reason=verdict.reason)
    event_record(
        actor=actor,
        action="vehicle.software_verified" if verdict.verified else "vehicle.software_refused",
        subject_type="vehicle",
        subject_id=vehicle.pk,
        before=before,
        after={"version": version, "status": status, "reason_code": verdict.code},
        data=data,
        carrier=vehicle.carrier,
    )
    return row


def carrier_software_recheck(*, carrier_id: int) -> int:
    """Check every vehicle of the carrier that reported a version again, against the metadata now held."""
    rows = list(
        VehicleSoftware.objects.filter(vehicle__carrier_id=carrier_id).values_list(
            "vehicle_id", "version", "reported_at"
        )
    )
    for vehicle_id, version, reported_at in rows:
        vehicle_software_check(vehicle_id=vehicle_id, version=version, reported_at=reported_at)
    return len(rows)
