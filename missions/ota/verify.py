"""Whether a reported software version is backed by the carrier's current signed metadata: a pure decision.

Checked in this order, the first failure is the answer (its ``code`` goes into
the event and onto the console):

1. ``no_metadata``: the carrier has no image repository, or none of its metadata ever verified;
2. ``metadata_refused`` / ``metadata_expired``: the last refresh of a repository was refused
   (bad signature, rollback, ...; an expired one is ``metadata_expired``), or the verified
   metadata has expired since;
3. ``not_a_target``: the version is not a target of the image repository's signed targets (unsigned);
4. ``director_mismatch``: with a director repository, its targets do not assign this image to the
   vehicle (``custom.vehicle_ids``), or name it with another length or hash than the image repository
   (Uptane: both repositories must agree on an image);
5. ``rollback``: the image's ``custom.release_counter`` is lower than that of the version the vehicle
   last ran verified (Uptane's release counter rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from missions.models import CarrierOtaRepository
from missions.ota.tuf_client import FAILURES

REFUSALS: dict[str, str] = {
    "no_metadata": "No verified TUF metadata",
    "metadata_refused": "Metadata refused",
    "metadata_expired": "Metadata expired",
    "not_a_target": "Not a signed target (unknown or unsigned version)",
    "director_mismatch": "Director does not assign this image",
    "rollback": "Rollback to an older release",
}


@dataclass(frozen=True)
class Verdict:
    """The decision: verified (``code`` empty) or refused with a code of ``REFUSALS`` and a sentence."""

    code: str = ""
    reason: str = ""
    release_counter: int | None = None

    @property
    def verified(self) -> bool:
        return not self.code


def _repository_problem(repo: CarrierOtaRepository, now: datetime) -> Verdict | None:
    name = repo.get_role_display().lower()
    if not repo.refresh_ok and repo.failure_kind and repo.failure_kind != "unreachable":
        code = "metadata_expired" if repo.failure_kind == "expired" else "metadata_refused"
        label = FAILURES.get(repo.failure_kind, repo.failure_kind)
        return Verdict(code, f"The {name}'s last refresh was refused: {label} ({repo.failure_reason})"[:500])
    if repo.verified_at is None:
        return Verdict("no_metadata", f"The {name}'s metadata never verified.")
    if repo.expires_at is not None and repo.expires_at <= now:
        return Verdict("metadata_expired", f"The {name}'s verified metadata expired at {repo.expires_at.isoformat()}.")
    return None


def software_verdict(
    *,
    version: str,
    vehicle_external_id: str,
    image: CarrierOtaRepository | None,
    director: CarrierOtaRepository | None,
    last_verified_version: str,
    last_release_counter: int | None,
    now: datetime,
) -> Verdict:
    if image is None:
        return Verdict("no_metadata", "The carrier has no image repository configured.")
    for repo in (image, director):
        if repo is not None and (problem := _repository_problem(repo, now)) is not None:
            return problem
    target: dict[str, Any] | None = image.targets.get(version)
    targets_version = image.versions.get("targets")
    if target is None:
        return Verdict(
            "not_a_target",
            f"{version!r} is not a target of the carrier's signed targets metadata (version {targets_version}).",
        )
    if director is not None:
        assigned: dict[str, Any] | None = director.targets.get(version)
        if assigned is None or vehicle_external_id not in (assigned.get("vehicle_ids") or []):
            return Verdict(
                "director_mismatch", f"The director repository does not assign {version!r} to {vehicle_external_id}."
            )
        if (assigned.get("length"), assigned.get("sha256")) != (target.get("length"), target.get("sha256")):
            return Verdict(
                "director_mismatch",
                f"The director and image repositories name {version!r} with a different length or hash.",
            )
    counter = target.get("release_counter")
    if (
        counter is not None
        and last_release_counter is not None
        and counter < last_release_counter
        and version != last_verified_version
    ):
        return Verdict(
            "rollback",
            f"{version!r} has release counter {counter}, lower than {last_release_counter} of "
            f"{last_verified_version!r}, which the vehicle ran before.",
        )
    return Verdict(release_counter=counter)
