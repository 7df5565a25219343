"""The only code that writes plan-signing keys and verified route plans.

``route_plan_submit`` runs the checks of ``missions.routeplans.artifact`` in
their order (length and digest, signature, then parsing), and only a plan that
passes every one is stored, as the mission's next version. A refusal stores
no plan: it leaves a ``route_plan.refused`` event (reason, declared digest and
size) and a count on /metrics, and is returned for the API to answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from missions.events import Actor, event_record
from missions.models import Carrier, CarrierSigningKey, Mission, RoutePlan
from missions.routeplans.artifact import (
    ParsedPlan,
    PlanRefused,
    PublicKeyError,
    Reason,
    Submission,
    integrity_check,
    key_id,
    plan_parse,
    public_key_load,
    public_key_pem,
    signature_verifies,
)
from missions.routeplans.metrics import submission_count
from missions.transitions import MISSION_ACTIVE
from tms_console.domain import Conflict, DomainError

log = logging.getLogger(__name__)

VERIFIED = "verified"


# --- Keys -----------------------------------------------------------------------------------------


@transaction.atomic
def signing_key_register(*, carrier_id: int, name: str, public_key: str, actor: Actor) -> CarrierSigningKey:
    """Register a carrier's ECDSA P-256 public key (PEM) for verifying its route plans."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if not name.strip():
        raise DomainError("Name the key (e.g. 'plans-2026').", field="name")
    try:
        key = public_key_load(public_key)
    except PublicKeyError as exc:
        raise DomainError(str(exc), field="public_key") from None
    kid = key_id(key)
    existing = CarrierSigningKey.objects.filter(key_id=kid).select_related("carrier").first()
    if existing is not None:
        owner = "this carrier" if existing.carrier_id == carrier.pk else "another carrier"
        raise DomainError(f"This key is already registered for {owner} ({kid[:12]}).", field="public_key")
    try:
        with transaction.atomic():
            signing_key = CarrierSigningKey.objects.create(
                carrier=carrier,
                name=name.strip()[:120],
                key_id=kid,
                public_key_pem=public_key_pem(key),
                created_by=actor.user,
            )
    except IntegrityError:  # registered at the same moment by another request
        raise DomainError(f"This key is already registered ({kid[:12]}).", field="public_key") from None
    event_record(
        actor=actor,
        action="signing_key.registered",
        subject_type="signing_key",
        subject_id=signing_key.pk,
        after={"carrier": carrier.slug, "name": signing_key.name, "key_id": kid},
        carrier=carrier,
    )
    return signing_key


@transaction.atomic
def signing_key_retire(*, key_pk: int, actor: Actor) -> CarrierSigningKey:
    """Stop a key verifying new plans; the plans it verified stay verified."""
    signing_key = CarrierSigningKey.objects.select_for_update().select_related("carrier").get(pk=key_pk)
    if signing_key.retired_at is not None:
        raise Conflict("This key is already retired.")
    signing_key.retired_at = timezone.now()
    signing_key.save(update_fields=["retired_at"])
    event_record(
        actor=actor,
        action="signing_key.retired",
        subject_type="signing_key",
        subject_id=signing_key.pk,
        before={"retired_at": None},
        after={"retired_at": signing_key.retired_at, "key_id": signing_key.key_id},
        carrier=signing_key.carrier,
    )
    return signing_key


# --- Plans ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitOutcome:
    """A verified plan, or the refusal (never both)."""

    plan: RoutePlan | None = None
    refusal: PlanRefused | None = None


def _verifying_key(carrier: Carrier, submission: Submission) -> CarrierSigningKey:
    """Step 2: the carrier's active key that verifies the signature over the exact bytes, or a refusal."""
    own = list(CarrierSigningKey.objects.filter(carrier=carrier))
    for candidate in own:
        if candidate.active and signature_verifies(
            public_key_load(candidate.public_key_pem), submission.signature, submission.artifact
        ):
            return candidate
    # Nothing verified: say why, without reading the bytes. A retired key of the carrier, or a key
    # of another carrier, tells the carrier (and on-call) which key to fix; the other carrier is
    # named only in the log, never to the caller.
    for candidate in own:
        if not candidate.active and signature_verifies(
            public_key_load(candidate.public_key_pem), submission.signature, submission.artifact
        ):
            raise PlanRefused(
                Reason.KEY_RETIRED,
                f"The plan is signed with the key {candidate.key_id[:12]}, retired since "
                f"{candidate.retired_at:%Y-%m-%d %H:%M} UTC; sign with an active key.",
            )
    others = CarrierSigningKey.objects.filter(retired_at__isnull=True).exclude(carrier=carrier)
    for other in others.only("pk", "carrier_id", "public_key_pem", "key_id"):
        if signature_verifies(public_key_load(other.public_key_pem), submission.signature, submission.artifact):
            log.warning(
                "route plan signed with another carrier's key",
                extra={"carrier": carrier.slug, "key_carrier_id": other.carrier_id, "key_id": other.key_id},
            )
            raise PlanRefused(
                Reason.KEY_OF_OTHER_CARRIER,
                "The signature verifies with a key registered for another carrier; a plan is accepted only "
                "when signed with one of your own keys.",
            )
    if not any(candidate.active for candidate in own):
        raise PlanRefused(
            Reason.NO_SIGNING_KEY, "No active signing key is registered for your carrier; ask the console to add one."
        )
    raise PlanRefused(
        Reason.SIGNATURE_INVALID,
        "The signature does not verify over the artifact's bytes with any of your registered keys.",
    )


def _plan_checks(*, mission: Mission, plan: ParsedPlan) -> None:
    """Step 4, on the parsed plan: the mission named, its version order, its validity window."""
    if plan.mission_id != mission.pk:
        raise PlanRefused(
            Reason.MISSION_MISMATCH,
            f"The plan is for mission {plan.mission_id}; it was sent for mission {mission.pk}.",
            errors=[{"pointer": "/mission_id", "detail": "Must be the mission of the URL.", "code": "invalid"}],
        )
    latest = RoutePlan.objects.filter(mission=mission).aggregate(v=Max("version"))["v"]
    if latest is not None and plan.version <= latest:
        raise PlanRefused(
            Reason.ROLLBACK,
            f"Version {plan.version} is not newer than the verified version {latest}: a plan is replaced only by "
            "a higher version.",
        )
    now = timezone.now()
    if now < plan.valid_from:
        raise PlanRefused(Reason.NOT_YET_VALID, f"The plan is valid from {plan.valid_from:%Y-%m-%dT%H:%M:%SZ}.")
    if now >= plan.valid_until:
        raise PlanRefused(Reason.EXPIRED, f"The plan expired at {plan.valid_until:%Y-%m-%dT%H:%M:%SZ}.")


@transaction.atomic
def route_plan_submit(*, mission_id: int, carrier: Carrier, submission: Submission, actor: Actor) -> SubmitOutcome:
    """Verify a signed plan for one of the carrier's missions and store it, or record why not.

    Returns instead of raising on a refusal, so the refusal's event commits with the request.
    """
    # The mission row is locked: two plans for one mission are verified one after the other, so a
    # version is compared with the plan stored just before it.
    mission = Mission.objects.select_for_update().select_related("shipment").get(pk=mission_id, carrier=carrier)
    signing_key: CarrierSigningKey | None = None
    try:
        if mission.status not in MISSION_ACTIVE:
            raise PlanRefused(Reason.MISSION_CLOSED, f"Mission {mission.pk} is {mission.status}; it takes no plan.")
        digest = integrity_check(submission)
        signing_key = _verifying_key(carrier, submission)
        plan = plan_parse(submission.artifact)
        _plan_checks(mission=mission, plan=plan)
    except PlanRefused as refusal:
        _refusal_record(mission=mission, carrier=carrier, submission=submission, refusal=refusal, actor=actor)
        return SubmitOutcome(refusal=refusal)
    stored = RoutePlan.objects.create(
        mission=mission,
        carrier=carrier,
        version=plan.version,
        sha256=digest,
        size_bytes=len(submission.artifact),
        artifact=submission.artifact,
        signature=submission.signature_text,
        signing_key=signing_key,
        waypoints=plan.waypoints,
        valid_from=plan.valid_from,
        valid_until=plan.valid_until,
    )
    event_record(
        actor=actor,
        action="route_plan.verified",
        subject_type="mission",
        subject_id=mission.pk,
        after={
            "version": stored.version,
            "sha256": stored.sha256,
            "size_bytes": stored.size_bytes,
            "key_id": signing_key.key_id,
            "valid_from": stored.valid_from,
            "valid_until": stored.valid_until,
            "waypoints": len(stored.waypoints),
        },
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=carrier,
    )
    submission_count(VERIFIED)
    return SubmitOutcome(plan=stored)


def _refusal_record(
    *, mission: Mission, carrier: Carrier, submission: Submission, refusal: PlanRefused, actor: Actor
) -> None:
    event_record(
        actor=actor,
        action="route_plan.refused",
        subject_type="mission",
        subject_id=mission.pk,
        data={
            "reason": refusal.reason,
            "detail": refusal.detail[:300],
            # What the carrier declared (not necessarily what it sent): enough to find the artifact on its side.
            "declared_sha256": submission.declared_sha256[:64],
            "declared_size": submission.declared_size,
        },
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=carrier,
    )
    # Counted whatever happens to the transaction: a refusal is a refusal.
    submission_count(refusal.reason)
