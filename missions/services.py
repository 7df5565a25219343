"""The only code that writes carriers, shipments, tenders, offers and missions.

Each function is keyword-only, runs in one transaction, locks the row it
changes, validates the move against the state-machine tables and appends an
event record (DESIGN.md §4).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from missions.choices import (
    ActorKind,
    AutonomyMode,
    CarrierStatus,
    ExceptionKind,
    ExceptionStatus,
    MissionStatus,
    OfferKind,
    ShipmentStatus,
    TenderStatus,
)
from missions.events import Actor, event_record
from missions.flags import CARRIER_FLAGS
from missions.models import (
    Carrier,
    CarrierFlag,
    Mission,
    MissionException,
    Offer,
    RoutePlan,
    Shipment,
    Tender,
    Vehicle,
)
from missions.routes import route_plan
from missions.selectors import carrier_fit
from missions.terms import route_plan_required
from missions.transitions import MISSION_ACTIVE, MISSION_TRANSITIONS, TENDER_OPEN, TENDER_TRANSITIONS
from missions.vehicles import vehicle_of_carrier
from tms_console import tracing
from tms_console.domain import Conflict, DomainError, transition_check

SHIPMENT_FIELDS = (
    "origin_address",
    "origin_region",
    "origin_lat",
    "origin_lon",
    "destination_address",
    "destination_region",
    "destination_lat",
    "destination_lon",
    "pickup_window_start",
    "pickup_window_end",
    "delivery_window_start",
    "delivery_window_end",
    "weight_kg",
    "hazmat",
    "needs_night_operations",
    "max_autonomy_level",
    "preferred_route",
    "target_rate_usd",
)


def _new_reference() -> str:
    """``SHP-<yymmdd>-<8 hex>``: 4.3 billion a day, so a fleet's tens of thousands of loads a day rarely
    meet an existing one, and ``shipment_create`` draws again when one does."""
    return f"SHP-{timezone.now():%y%m%d}-{secrets.token_hex(4).upper()}"


REFERENCE_ATTEMPTS = 5


# --- Carriers -----------------------------------------------------------------


@transaction.atomic
def carrier_pause(*, carrier_id: int, actor: Actor, reason: str) -> Carrier:
    if not reason.strip():
        raise DomainError("A reason is required to pause a carrier.", field="reason")
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    before = {"status": carrier.status}
    carrier.status, carrier.paused_reason = CarrierStatus.PAUSED, reason.strip()
    carrier.save(update_fields=["status", "paused_reason"])
    event_record(
        actor=actor,
        action="carrier.paused",
        subject_type="carrier",
        subject_id=carrier.pk,
        before=before,
        after={"status": carrier.status, "reason": carrier.paused_reason},
        carrier=carrier,
    )
    return carrier


@transaction.atomic
def carrier_resume(*, carrier_id: int, actor: Actor) -> Carrier:
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if carrier.status == CarrierStatus.ONBOARDING:
        raise DomainError("A carrier in onboarding goes live through its onboarding, not by a resume.")
    before = {"status": carrier.status, "reason": carrier.paused_reason}
    carrier.status, carrier.paused_reason = CarrierStatus.ACTIVE, ""
    carrier.save(update_fields=["status", "paused_reason"])
    event_record(
        actor=actor,
        action="carrier.resumed",
        subject_type="carrier",
        subject_id=carrier.pk,
        before=before,
        after={"status": carrier.status},
        carrier=carrier,
    )
    return carrier


@transaction.atomic
def carrier_fleet_pause(*, carrier_id: int, actor: Actor, reason: str) -> Carrier:
    """Stop autonomous tendering to a carrier's fleet until on-call confirms it is safe."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if carrier.fleet_paused:
        return carrier
    carrier.fleet_paused, carrier.fleet_paused_reason = True, reason[:300]
    carrier.save(update_fields=["fleet_paused", "fleet_paused_reason"])
    event_record(
        actor=actor,
        action="carrier.fleet_paused",
        subject_type="carrier",
        subject_id=carrier.pk,
        before={"fleet_paused": False},
        after={"fleet_paused": True, "reason": reason},
        carrier=carrier,
    )
    return carrier


@transaction.atomic
def carrier_fleet_resume(*, carrier_id: int, actor: Actor, confirmation: str) -> Carrier:
    if not confirmation.strip():
        raise DomainError("Resuming a paused fleet needs a recorded confirmation.", field="confirmation")
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    before = {"fleet_paused": carrier.fleet_paused, "reason": carrier.fleet_paused_reason}
    carrier.fleet_paused, carrier.fleet_paused_reason = False, ""
    carrier.save(update_fields=["fleet_paused", "fleet_paused_reason"])
    event_record(
        actor=actor,
        action="carrier.fleet_resumed",
        subject_type="carrier",
        subject_id=carrier.pk,
        before=before,
        after={"fleet_paused": False},
        data={"confirmation": confirmation.strip()},
        carrier=carrier,
    )
    return carrier


@transaction.atomic
def carrier_flag_set(
    *, carrier_id: int, key: str, enabled: bool, actor: Actor, reason: str, confirmed: bool = False
) -> CarrierFlag:
    """Switch one feature flag of an autonomous carrier on or off, with the reason on the audit trail.

    Switching a risky capability on (``CarrierFlagSpec.risky``) needs ``confirmed``.
    Setting a flag to the value it has records nothing.
    """
    spec = CARRIER_FLAGS.get(key)
    if spec is None:
        raise DomainError(f"There is no feature flag {key[:60]!r}.", field="flag")
    if not reason.strip():
        raise DomainError("A reason is required to change a feature flag.", field="reason")
    if enabled and spec.risky and not confirmed:
        raise DomainError(f"Confirm that {spec.label.lower()} may be switched on: {spec.effect}", field="confirm")
    # The carrier row is the lock: two changes of one carrier's flags are recorded in order.
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if not carrier.is_autonomous:
        raise DomainError(f"{carrier.name} is human-driven: autonomy flags do not apply.", field="flag")
    flag, _created = CarrierFlag.objects.get_or_create(
        carrier=carrier, key=key, defaults={"enabled": False, "changed_at": timezone.now()}
    )
    if flag.enabled == enabled:  # already so (a new row starts at the default, off)
        return flag
    before = {"enabled": flag.enabled}
    flag.enabled, flag.reason = enabled, reason.strip()[:300]
    flag.changed_by, flag.changed_at = actor.label[:150], timezone.now()
    flag.save(update_fields=["enabled", "reason", "changed_by", "changed_at"])
    event_record(
        actor=actor,
        action="carrier.flag_changed",
        subject_type="carrier",
        subject_id=carrier.pk,
        before=before,
        after={"enabled": enabled},
        data={"flag": key, "label": spec.label, "enabled": enabled, "reason": flag.reason},
        carrier=carrier,
    )
    return flag


# --- Shipments ----------------------------------------------------------------


@transaction.atomic
def shipment_create(*, actor: Actor, **fields: Any) -> Shipment:
    """Validate and store a new shipment; its correlation id starts here."""
    unknown = set(fields) - set(SHIPMENT_FIELDS)
    if unknown:
        raise DomainError(f"Unknown shipment fields: {', '.join(sorted(unknown))}.")
    shipment = Shipment(reference=_new_reference(), created_by=actor.user, **fields)
    shipment.full_clean(exclude=["reference"])
    for attempt in range(REFERENCE_ATTEMPTS):
        try:
            with transaction.atomic():  # a savepoint: a reference taken meanwhile is drawn again
                shipment.save(force_insert=True)
            break
        except IntegrityError:
            taken = Shipment.objects.filter(reference=shipment.reference).exists()
            if not taken or attempt == REFERENCE_ATTEMPTS - 1:
                raise
            shipment.reference = _new_reference()
    event_record(
        actor=actor,
        action="shipment.created",
        subject_type="shipment",
        subject_id=shipment.pk,
        after={"status": shipment.status, "reference": shipment.reference},
        correlation_id=shipment.correlation_id,
        shipment=shipment,
    )
    return shipment


def _shipment_set_status(*, shipment: Shipment, status: str, actor: Actor, reason: str = "") -> None:
    if shipment.status == status:
        return
    before = shipment.status
    shipment.status = status
    shipment.save(update_fields=["status"])
    event_record(
        actor=actor,
        action="shipment.status_changed",
        subject_type="shipment",
        subject_id=shipment.pk,
        before={"status": before},
        after={"status": status},
        data={"reason": reason} if reason else None,
        correlation_id=shipment.correlation_id,
        shipment=shipment,
    )


@transaction.atomic
def shipment_cancel(*, shipment_id: int, actor: Actor, reason: str) -> Shipment:
    if not reason.strip():
        raise DomainError("A reason is required to cancel.", field="reason")
    shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
    if shipment.status in (ShipmentStatus.DELIVERED, ShipmentStatus.CANCELLED, ShipmentStatus.FAILED):
        raise DomainError(f"Shipment {shipment.reference} is already {shipment.get_status_display().lower()}.")
    for tender in shipment.tenders.filter(status__in=TENDER_OPEN):
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.CANCELLED, actor=actor, reason=reason)
    for mission in shipment.missions.filter(status__in=MISSION_ACTIVE):
        mission_transition(mission_id=mission.pk, to_status=MissionStatus.CANCELLED, actor=actor, reason=reason)
    shipment.refresh_from_db()
    _shipment_set_status(shipment=shipment, status=ShipmentStatus.CANCELLED, actor=actor, reason=reason)
    return shipment


# --- Tenders ------------------------------------------------------------------


@transaction.atomic
def tender_create(
    *,
    actor: Actor,
    shipment_id: int,
    carrier_id: int,
    offered_price_usd: Decimal | None = None,
    expiry_seconds: int | None = None,
    waterfall_rank: int | None = None,
    is_fallback: bool = False,
) -> Tender:
    """Open a tender of a shipment to one carrier, after checking the carrier fits."""
    shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
    carrier = Carrier.objects.select_related("circuit").get(pk=carrier_id)
    if shipment.status not in (ShipmentStatus.OPEN, ShipmentStatus.TENDERING) and not is_fallback:
        raise Conflict(
            f"Shipment {shipment.reference} is {shipment.get_status_display().lower()}; it cannot be tendered."
        )
    if shipment.missions.filter(status__in=MISSION_ACTIVE).exists() and not is_fallback:
        raise Conflict(f"Shipment {shipment.reference} already has an active mission.")
    fit = carrier_fit(carrier=carrier, shipment=shipment)
    if not fit.eligible:
        raise DomainError(f"{carrier.name} cannot take this shipment: {'; '.join(fit.reasons)}.")
    if shipment.tenders.filter(carrier=carrier, status__in=TENDER_OPEN).exists():
        raise Conflict(f"{carrier.name} already has an open tender for {shipment.reference}.")
    if offered_price_usd is not None and offered_price_usd < 0:
        raise DomainError("The offered price cannot be negative.", field="offered_price_usd")
    seconds = expiry_seconds or carrier.tender_expiry_seconds
    tender = Tender.objects.create(
        shipment=shipment,
        carrier=carrier,
        offered_price_usd=offered_price_usd,
        expires_at=timezone.now() + timedelta(seconds=seconds),
        waterfall_rank=waterfall_rank,
        is_fallback=is_fallback,
        correlation_id=shipment.correlation_id,
        traceparent=tracing.current_traceparent(),
    )
    tracing.annotate(
        shipment_id=shipment.pk, tender_id=tender.pk, carrier=carrier.slug, correlation_id=shipment.correlation_id
    )
    event_record(
        actor=actor,
        action="tender.created",
        subject_type="tender",
        subject_id=tender.pk,
        after={
            "status": tender.status,
            "carrier": carrier.slug,
            "offered_price_usd": offered_price_usd,
            "expires_at": tender.expires_at,
        },
        correlation_id=shipment.correlation_id,
        shipment=shipment,
        carrier=carrier,
    )
    if shipment.status == ShipmentStatus.OPEN:
        _shipment_set_status(shipment=shipment, status=ShipmentStatus.TENDERING, actor=actor)
    return tender


@transaction.atomic
def tender_transition(
    *, tender_id: int, to_status: str, actor: Actor, reason: str = "", data: dict[str, Any] | None = None
) -> Tender:
    """Move a tender along its state machine; refuses an illegal move without changing anything."""
    tender = Tender.objects.select_for_update().select_related("shipment", "carrier").get(pk=tender_id)
    transition_check(machine="tender", table=TENDER_TRANSITIONS, current=tender.status, target=to_status)
    if to_status == TenderStatus.CANCELLED and not reason.strip():
        raise DomainError("A reason is required to cancel a tender.", field="reason")
    before = tender.status
    tender.status = to_status
    tender.status_reason = reason[:300]
    tender.save(update_fields=["status", "status_reason", "updated_at"])
    event_record(
        actor=actor,
        action="tender.status_changed",
        subject_type="tender",
        subject_id=tender.pk,
        before={"status": before},
        after={"status": to_status},
        data={"reason": reason, **(data or {})} if (reason or data) else None,
        correlation_id=tender.correlation_id,
        shipment=tender.shipment,
        carrier=tender.carrier,
    )
    shipment = tender.shipment
    if to_status not in TENDER_OPEN and shipment.status == ShipmentStatus.TENDERING:
        still_open = shipment.tenders.filter(status__in=TENDER_OPEN).exists()
        has_mission = shipment.missions.filter(status__in=MISSION_ACTIVE).exists()
        if not still_open and not has_mission and to_status != TenderStatus.ACCEPTED:
            _shipment_set_status(shipment=shipment, status=ShipmentStatus.OPEN, actor=actor)
    return tender


@transaction.atomic
def tender_mark_sent(*, tender_id: int, actor: Actor, external_ref: str = "") -> Tender:
    tender = tender_transition(tender_id=tender_id, to_status=TenderStatus.SENT, actor=actor)
    if external_ref:
        tender.external_ref = external_ref[:120]
        tender.save(update_fields=["external_ref"])
    return tender


def offer_record(
    *,
    tender_id: int,
    actor: Actor,
    kind: str,
    price_usd: Decimal | None = None,
    vehicle_external_id: str = "",
    route_id: str = "",
    eta: datetime | None = None,
    autonomy_mode: str = "",
    reason: str = "",
    metadata: dict[str, Any] | None = None,
    source: str = "api",
) -> Offer:
    """Record a carrier's answer to a tender and apply it.

    An answer to a tender that is no longer open (expired, cancelled,
    answered already) is refused with a clear error and leaves an event on
    the timeline, so a late or duplicated answer changes nothing else. The
    refusal (and an overdue tender's expiry) is committed before the error is
    raised, so the caller's error does not roll the record back.
    """
    if kind not in OfferKind.values:
        raise DomainError(f"Unknown offer kind '{kind}'.", field="kind")
    with transaction.atomic():
        tender = Tender.objects.select_for_update().select_related("shipment", "carrier").get(pk=tender_id)
        if tender.status in TENDER_OPEN and tender.expires_at <= timezone.now():
            tender_transition(tender_id=tender.pk, to_status=TenderStatus.EXPIRED, actor=Actor.system("expiry"))
            tender.refresh_from_db()
        if tender.status in (TenderStatus.SENT, TenderStatus.PENDING):
            return _offer_apply(
                tender=tender,
                actor=actor,
                kind=kind,
                price_usd=price_usd,
                vehicle_external_id=vehicle_external_id,
                route_id=route_id,
                eta=eta,
                autonomy_mode=autonomy_mode,
                reason=reason,
                metadata=metadata,
                source=source,
            )
        event_record(
            actor=actor,
            action="offer.refused",
            subject_type="tender",
            subject_id=tender.pk,
            data={"kind": kind, "why": f"tender is {tender.status}"},
            correlation_id=tender.correlation_id,
            shipment=tender.shipment,
            carrier=tender.carrier,
        )
    raise Conflict(f"Tender {tender.pk} is {tender.get_status_display().lower()}; it no longer takes answers.")


def _offer_apply(
    *,
    tender: Tender,
    actor: Actor,
    kind: str,
    price_usd: Decimal | None,
    vehicle_external_id: str,
    route_id: str,
    eta: datetime | None,
    autonomy_mode: str,
    reason: str,
    metadata: dict[str, Any] | None,
    source: str,
) -> Offer:
    if kind == OfferKind.COUNTER and (price_usd is None or price_usd <= 0):
        raise DomainError("A counter-offer needs a positive price.", field="price_usd")
    if autonomy_mode and autonomy_mode not in AutonomyMode.values:
        raise DomainError(f"Unknown autonomy mode '{autonomy_mode}'.", field="autonomy_mode")
    if kind == OfferKind.ACCEPT and vehicle_external_id:
        vehicle_of_carrier(tender.carrier, vehicle_external_id)
    offer = Offer(
        tender=tender,
        kind=kind,
        price_usd=price_usd,
        vehicle_external_id=vehicle_external_id,
        route_id=route_id,
        eta=eta,
        autonomy_mode=autonomy_mode,
        reason=reason[:300],
        metadata=metadata or {},
        source=source,
    )
    offer.full_clean()
    offer.save()
    event_record(
        actor=actor,
        action=f"offer.{kind}",
        subject_type="offer",
        subject_id=offer.pk,
        after={"kind": kind, "price_usd": price_usd, "vehicle": vehicle_external_id, "eta": eta, "reason": reason},
        correlation_id=tender.correlation_id,
        shipment=tender.shipment,
        carrier=tender.carrier,
    )
    if tender.status == TenderStatus.PENDING:
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.SENT, actor=actor)
    if kind == OfferKind.ACCEPT:
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.ACCEPTED, actor=actor)
        _mission_create(tender=tender, offer=offer, actor=actor)
    elif kind == OfferKind.REJECT:
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.REJECTED, actor=actor, reason=reason)
    else:
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.COUNTERED, actor=actor)
    return offer


@transaction.atomic
def counter_offer_decide(*, tender_id: int, actor: Actor, accept: bool, reason: str = "") -> Tender:
    """The dispatcher accepts or declines a carrier's counter-offer."""
    tender = Tender.objects.select_for_update().select_related("shipment", "carrier").get(pk=tender_id)
    if tender.status != TenderStatus.COUNTERED:
        raise Conflict(f"Tender {tender.pk} has no counter-offer waiting (it is {tender.status}).")
    counter = tender.offers.filter(kind=OfferKind.COUNTER).order_by("-id").first()
    if counter is None:
        raise Conflict("No counter-offer found for this tender.")
    if not accept:
        return tender_transition(
            tender_id=tender.pk,
            to_status=TenderStatus.REJECTED,
            actor=actor,
            reason=reason or "counter-offer declined by dispatcher",
        )
    if tender.expires_at <= timezone.now():
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.EXPIRED, actor=Actor.system("expiry"))
        raise Conflict("The counter-offer expired before it was accepted.")
    tender_transition(
        tender_id=tender.pk, to_status=TenderStatus.ACCEPTED, actor=actor, data={"counter_offer": counter.pk}
    )
    _mission_create(tender=tender, offer=counter, actor=actor)
    tender.refresh_from_db()
    return tender


def _mission_create(*, tender: Tender, offer: Offer, actor: Actor) -> Mission:
    shipment = Shipment.objects.select_for_update().get(pk=tender.shipment_id)
    replaced = None
    if tender.is_fallback:
        replaced = (
            shipment.missions.filter(status=MissionStatus.HANDED_OVER, replaced_by__isnull=True).order_by("-id").first()
        )
    elif shipment.missions.filter(status__in=MISSION_ACTIVE).exists():
        raise Conflict(f"Shipment {shipment.reference} already has an active mission.")
    vehicle = vehicle_of_carrier(tender.carrier, offer.vehicle_external_id) if offer.vehicle_external_id else None
    mode = offer.autonomy_mode or (AutonomyMode.AUTONOMOUS if tender.carrier.is_autonomous else AutonomyMode.MANUAL)
    # A failover mission drives the remaining leg: from where the replaced truck was last seen.
    start = (shipment.origin_lat, shipment.origin_lon)
    if replaced is not None and replaced.last_lat is not None and replaced.last_lon is not None:
        start = (replaced.last_lat, replaced.last_lon)
    route = route_plan(start, (shipment.destination_lat, shipment.destination_lon))
    mission = Mission.objects.create(
        shipment=shipment,
        carrier=tender.carrier,
        tender=tender,
        vehicle=vehicle,
        replaces=replaced,
        route_id=offer.route_id,
        eta=offer.eta,
        planned_route=[list(point) for point in route.points],
        planned_route_km=route.km,
        planned_route_basis=route.basis,
        autonomy_mode=mode,
        price_usd=offer.price_usd if offer.price_usd is not None else tender.offered_price_usd,
        correlation_id=shipment.correlation_id,
        # The trace the load has been in since the dispatcher tendered it (this answer continues it).
        traceparent=tracing.current_traceparent() or tender.traceparent,
    )
    tracing.annotate(
        shipment_id=shipment.pk,
        mission_id=mission.pk,
        carrier=tender.carrier.slug,
        correlation_id=shipment.correlation_id,
    )
    event_record(
        actor=actor,
        action="mission.created",
        subject_type="mission",
        subject_id=mission.pk,
        after={
            "status": mission.status,
            "carrier": tender.carrier.slug,
            "vehicle": offer.vehicle_external_id,
            "route_id": mission.route_id,
            "eta": mission.eta,
            "autonomy_mode": mode,
            "planned_route": {"km": route.km, "basis": route.basis, "points": len(route.points)},
        },
        correlation_id=shipment.correlation_id,
        shipment=shipment,
        mission=mission,
        carrier=tender.carrier,
    )
    # Other open tenders for this shipment are moot now.
    for other in shipment.tenders.filter(status__in=TENDER_OPEN).exclude(pk=tender.pk):
        tender_transition(
            tender_id=other.pk,
            to_status=TenderStatus.CANCELLED,
            actor=Actor.system("dispatch"),
            reason=f"shipment assigned to {tender.carrier.name}",
        )
    _shipment_set_status(shipment=shipment, status=ShipmentStatus.ASSIGNED, actor=actor)
    return mission


# --- Missions -----------------------------------------------------------------

_SHIPMENT_STATUS_FOR_MISSION = {
    MissionStatus.EN_ROUTE: ShipmentStatus.IN_TRANSIT,
    MissionStatus.ARRIVING: ShipmentStatus.IN_TRANSIT,
    MissionStatus.UNLOADING: ShipmentStatus.IN_TRANSIT,
    MissionStatus.COMPLETED: ShipmentStatus.DELIVERED,
    MissionStatus.FAILED: ShipmentStatus.FAILED,
    MissionStatus.CANCELLED: ShipmentStatus.OPEN,
}


class RoutePlanRequired(Conflict):
    """En route refused: the carrier's contract requires a verified, currently valid signed route plan."""

    code = "route_plan_required"
    problem_code = "route-plan-required"


def _route_plan_gate(mission: Mission, *, now: datetime) -> None:
    """A carrier whose contract requires signed route plans sets off only on its latest verified, valid plan.

    The console's own automation (a suspended mission resuming when its truck reports again) is not
    gated: it records what the truck already does. docs/decisions/0024-signed-route-plans.md.
    """
    if not route_plan_required(carrier_id=mission.carrier_id, today=now.date()):
        return
    latest = RoutePlan.objects.filter(mission_id=mission.pk).order_by("-version").first()
    if latest is None:
        raise RoutePlanRequired(
            f"{mission.carrier.name}'s contract requires a signed route plan: mission {mission.pk} goes en route "
            f"only after a plan is submitted and verified (POST /api/v1/missions/{mission.pk}/route-plans)."
        )
    if not latest.valid_from <= now < latest.valid_until:
        state = "expired" if now >= latest.valid_until else "not yet valid"
        raise RoutePlanRequired(
            f"Mission {mission.pk}'s verified route plan v{latest.version} is {state} (valid "
            f"{latest.valid_from:%Y-%m-%d %H:%M} to {latest.valid_until:%Y-%m-%d %H:%M} UTC); the contract requires "
            "a currently valid plan: submit a new version."
        )


@transaction.atomic
def mission_transition(
    *, mission_id: int, to_status: str, actor: Actor, reason: str = "", data: dict[str, Any] | None = None
) -> Mission:
    """Move a mission along its state machine and keep the shipment's status in step."""
    mission = Mission.objects.select_for_update().select_related("shipment", "carrier").get(pk=mission_id)
    transition_check(machine="mission", table=MISSION_TRANSITIONS, current=mission.status, target=to_status)
    if to_status in (MissionStatus.CANCELLED, MissionStatus.FAILED, MissionStatus.SUSPENDED) and not reason.strip():
        raise DomainError(f"A reason is required to mark a mission {to_status}.", field="reason")
    now = timezone.now()
    if to_status == MissionStatus.EN_ROUTE and actor.kind != ActorKind.SYSTEM:
        _route_plan_gate(mission, now=now)
    before = mission.status
    mission.status = to_status
    mission.status_reason = reason[:300]
    fields = ["status", "status_reason", "updated_at"]
    if to_status == MissionStatus.EN_ROUTE and mission.started_at is None:
        mission.started_at = now
        fields.append("started_at")
    if to_status in (MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.CANCELLED, MissionStatus.HANDED_OVER):
        mission.completed_at = now
        fields.append("completed_at")
    mission.save(update_fields=fields)
    event_record(
        actor=actor,
        action="mission.status_changed",
        subject_type="mission",
        subject_id=mission.pk,
        before={"status": before},
        after={"status": to_status},
        data={"reason": reason, **(data or {})} if (reason or data) else None,
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    shipment_status = _SHIPMENT_STATUS_FOR_MISSION.get(MissionStatus(to_status))
    if shipment_status is not None and mission.shipment.status != ShipmentStatus.CANCELLED:
        _shipment_set_status(shipment=mission.shipment, status=shipment_status, actor=actor, reason=reason)
    return mission


@transaction.atomic
def mission_autonomy_change(*, mission_id: int, mode: str, actor: Actor, reason: str = "") -> Mission:
    if mode not in AutonomyMode.values:
        raise DomainError(f"Unknown autonomy mode '{mode}'.", field="mode")
    # of=("self",): PostgreSQL cannot lock the nullable side of the outer join to the vehicle.
    mission = (
        Mission.objects.select_for_update(of=("self",))
        .select_related("shipment", "carrier", "vehicle")
        .get(pk=mission_id)
    )
    if mission.status not in MISSION_ACTIVE:
        raise Conflict(f"Mission {mission.pk} is {mission.status}; its autonomy mode can no longer change.")
    if mission.autonomy_mode == mode:
        return mission
    before = mission.autonomy_mode
    mission.autonomy_mode = mode
    fields = ["autonomy_mode", "updated_at"]
    if mode in (AutonomyMode.MANUAL, AutonomyMode.SUPERVISED) and before == AutonomyMode.AUTONOMOUS:
        mission.human_intervened = True
        fields.append("human_intervened")
    mission.save(update_fields=fields)
    if mission.vehicle is not None:
        Vehicle.objects.filter(pk=mission.vehicle.pk).update(autonomy_mode=mode)
    event_record(
        actor=actor,
        action="mission.mode_changed",
        subject_type="mission",
        subject_id=mission.pk,
        before={"autonomy_mode": before},
        after={"autonomy_mode": mode},
        data={"reason": reason} if reason else None,
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    if before == AutonomyMode.AUTONOMOUS and mode == AutonomyMode.SUPERVISED and mission.carrier.is_autonomous:
        # Graceful degradation: no more autonomous tenders to this fleet until on-call confirms.
        vehicle = mission.vehicle.external_id if mission.vehicle else "a vehicle"
        carrier_fleet_pause(
            carrier_id=mission.carrier_id,
            actor=Actor.system("degradation"),
            reason=f"{vehicle} dropped to supervised mode on mission {mission.pk}",
        )
        mission_exception_report(
            mission_id=mission.pk,
            kind=ExceptionKind.MODE_DEGRADED,
            actor=actor,
            detail=reason or "autonomous -> supervised",
        )
    return mission


@transaction.atomic
def mission_exception_report(
    *,
    mission_id: int,
    kind: str,
    actor: Actor,
    detail: str = "",
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> MissionException:
    if kind not in ExceptionKind.values:
        raise DomainError(f"Unknown exception kind '{kind}'.", field="kind")
    mission = Mission.objects.select_for_update().select_related("shipment", "carrier").get(pk=mission_id)
    exc = MissionException.objects.create(
        mission=mission,
        kind=kind,
        detail=detail[:5000],
        data=data or {},
        reported_by=actor.kind,
        occurred_at=occurred_at or timezone.now(),
        correlation_id=mission.correlation_id,
    )
    event_record(
        actor=actor,
        action="mission.exception",
        subject_type="exception",
        subject_id=exc.pk,
        after={"kind": kind, "status": exc.status, "detail": detail[:500]},
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    return exc


@transaction.atomic
def mission_exception_resolve(*, exception_id: int, actor: Actor, note: str = "") -> MissionException:
    exc = MissionException.objects.select_for_update().select_related("mission__shipment").get(pk=exception_id)
    if exc.status == ExceptionStatus.RESOLVED:
        raise Conflict("This exception is already resolved.")
    exc.status, exc.resolved_at = ExceptionStatus.RESOLVED, timezone.now()
    exc.save(update_fields=["status", "resolved_at"])
    mission = exc.mission
    event_record(
        actor=actor,
        action="mission.exception_resolved",
        subject_type="exception",
        subject_id=exc.pk,
        before={"status": ExceptionStatus.OPEN},
        after={"status": ExceptionStatus.RESOLVED},
        data={"note": note} if note else None,
        correlation_id=exc.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    return exc


def validation_messages(error: ValidationError) -> dict[str, list[str]]:
    """Flatten a model ValidationError into field -> messages (``__all__`` for the rest)."""
    if hasattr(error, "error_dict"):
        return {k: [m for e in v for m in e.messages] for k, v in error.error_dict.items()}
    return {"__all__": list(error.messages)}
