"""Dispatch: publishing tenders to carriers, the automatic waterfall and tender expiry.

These are services (they write through ``missions.services`` and record
events); the outbound HTTP work runs in Celery tasks enqueued after commit,
so a slow carrier never holds a database transaction open.

Carriers without ``api_base_url`` are *pull* carriers: a published tender is
marked SENT at once and the carrier reads it through the partner API.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from missions import services
from missions.choices import OfferKind, ShipmentStatus, TenderStatus
from missions.events import Actor, event_record
from missions.models import Carrier, Offer, Shipment, Tender
from missions.models.outbound import TenderWaterfall
from missions.selectors import carrier_ranking
from missions.services import offer_record, tender_create, tender_mark_sent, tender_transition
from missions.tendering.carrier_client import CarrierBusy, CarrierClient, CarrierError
from missions.tendering.channels import channel_for
from missions.transitions import MISSION_ACTIVE, TENDER_OPEN
from tms_console.domain import Conflict, DomainError, IllegalTransition

log = logging.getLogger(__name__)

DISPATCH = Actor.system("dispatch")
WATERFALL = Actor.system("waterfall")
EXPIRY = Actor.system("expiry")


def _is_push(carrier: Carrier) -> bool:
    """We send this carrier its tenders: over its REST API or another channel (EDI)."""
    return bool(carrier.api_base_url) or channel_for(carrier) is not None


# --- Publishing ---------------------------------------------------------------


def tender_publish(*, tender_id: int) -> None:
    """Hand a freshly created tender to its carrier.

    Push carriers: the send task is enqueued after commit (so the worker sees
    the row). Pull carriers: the tender is marked SENT now and waits for the
    carrier to read it through the partner API.
    """
    tender = Tender.objects.select_related("carrier").get(pk=tender_id)
    if tender.status != TenderStatus.PENDING:
        return
    if not _is_push(tender.carrier):
        tender_mark_sent(tender_id=tender.pk, actor=DISPATCH)
        return
    _queued(tender, action="tender.queued")


# --- Waterfall ----------------------------------------------------------------


def waterfall_start(
    *,
    shipment_id: int,
    actor: Actor,
    carrier_ids: list[int] | None = None,
    offered_price_usd: Decimal | None = None,
) -> Tender | None:
    """Tender a shipment to the best eligible carrier and remember the order for the next ones.

    ``carrier_ids`` narrows and orders the list (the dispatcher's pick);
    otherwise every eligible carrier from ``carrier_ranking`` is used, best
    first. Returns the first tender, or None when no carrier fits.
    """
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
        if shipment.status not in (ShipmentStatus.OPEN, ShipmentStatus.TENDERING):
            status = shipment.get_status_display().lower()
            raise Conflict(f"Shipment {shipment.reference} is {status}; it cannot be tendered.")
        if shipment.tenders.filter(status__in=TENDER_OPEN).exists():
            raise Conflict(f"Shipment {shipment.reference} already has an open tender; cancel it or await the answer.")
        ranked = [f.carrier.pk for f in carrier_ranking(shipment=shipment) if f.eligible]
        # The dispatcher's pick keeps its order; a carrier that does not fit is
        # skipped with an event when its turn comes.
        order = list(dict.fromkeys(carrier_ids)) if carrier_ids is not None else ranked
        TenderWaterfall.objects.filter(shipment=shipment, is_active=True).update(
            is_active=False, stopped_reason="replaced by a new waterfall", updated_at=timezone.now()
        )
        waterfall = TenderWaterfall.objects.create(
            shipment=shipment, carrier_ids=order, offered_price_usd=offered_price_usd, started_by=actor.label[:150]
        )
        event_record(
            actor=actor,
            action="waterfall.started",
            subject_type="shipment",
            subject_id=shipment.pk,
            data={"waterfall": waterfall.pk, "carrier_ids": order, "offered_price_usd": offered_price_usd},
            correlation_id=shipment.correlation_id,
            shipment=shipment,
        )
        return _waterfall_next(waterfall=waterfall, shipment=shipment, actor=actor)


def waterfall_advance(*, shipment_id: int) -> Tender | None:
    """Tender to the next carrier of the shipment's active waterfall, if it needs one.

    A no-op (returns None) when there is no active waterfall, a tender is
    still open, or the shipment is assigned; safe to call from several places.
    """
    if not TenderWaterfall.objects.filter(shipment_id=shipment_id, is_active=True).exists():
        return None  # the common case, without taking any lock
    with transaction.atomic():
        # Shipment first, then waterfall: the same lock order as waterfall_start.
        shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
        waterfall = TenderWaterfall.objects.select_for_update().filter(shipment_id=shipment_id, is_active=True).first()
        if waterfall is None:
            return None
        return _waterfall_next(waterfall=waterfall, shipment=shipment, actor=WATERFALL)


def waterfall_stop(*, shipment_id: int, actor: Actor, reason: str) -> bool:
    """Stop the shipment's active waterfall (open tenders are left as they are)."""
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
        waterfall = TenderWaterfall.objects.select_for_update().filter(shipment_id=shipment_id, is_active=True).first()
        if waterfall is None:
            return False
        _waterfall_close(waterfall=waterfall, shipment=shipment, actor=actor, reason=reason, action="waterfall.stopped")
        return True


def _waterfall_close(*, waterfall: TenderWaterfall, shipment: Shipment, actor: Actor, reason: str, action: str) -> None:
    waterfall.is_active = False
    waterfall.stopped_reason = reason[:300]
    waterfall.save(update_fields=["is_active", "stopped_reason", "updated_at"])
    event_record(
        actor=actor,
        action=action,
        subject_type="shipment",
        subject_id=shipment.pk,
        data={"waterfall": waterfall.pk, "reason": reason},
        correlation_id=shipment.correlation_id,
        shipment=shipment,
    )


def _waterfall_next(*, waterfall: TenderWaterfall, shipment: Shipment, actor: Actor) -> Tender | None:
    """Create the next tender of a locked waterfall; must run inside its transaction."""
    if shipment.missions.filter(status__in=MISSION_ACTIVE).exists() or shipment.status not in (
        ShipmentStatus.OPEN,
        ShipmentStatus.TENDERING,
    ):
        _waterfall_close(
            waterfall=waterfall,
            shipment=shipment,
            actor=actor,
            reason=f"shipment is {shipment.status}",
            action="waterfall.finished",
        )
        return None
    if shipment.tenders.filter(status__in=TENDER_OPEN).exists():
        return None
    order: list[int] = list(waterfall.carrier_ids)
    while waterfall.next_index < len(order):
        rank = waterfall.next_index + 1
        carrier_id = order[waterfall.next_index]
        waterfall.next_index += 1
        waterfall.save(update_fields=["next_index", "updated_at"])
        try:
            # A savepoint, so a refused carrier leaves nothing half-written.
            with transaction.atomic():
                tender = tender_create(
                    actor=actor,
                    shipment_id=shipment.pk,
                    carrier_id=carrier_id,
                    offered_price_usd=waterfall.offered_price_usd,
                    waterfall_rank=rank,
                )
                tender_publish(tender_id=tender.pk)
            tender.refresh_from_db()  # a pull carrier's tender is SENT already
            return tender
        except (DomainError, Carrier.DoesNotExist) as exc:
            event_record(
                actor=actor,
                action="waterfall.skipped",
                subject_type="shipment",
                subject_id=shipment.pk,
                data={"waterfall": waterfall.pk, "carrier_id": carrier_id, "rank": rank, "reason": str(exc)},
                correlation_id=shipment.correlation_id,
                shipment=shipment,
            )
    _waterfall_close(
        waterfall=waterfall,
        shipment=shipment,
        actor=actor,
        reason="no carrier left in the waterfall",
        action="waterfall.exhausted",
    )
    return None


def offer_receive(**offer: Any) -> Offer:
    """Record a carrier's answer (``services.offer_record``); a rejection moves the waterfall on at once."""
    recorded = services.offer_record(**offer)
    if recorded.kind == OfferKind.REJECT:
        waterfall_advance(shipment_id=recorded.tender.shipment_id)
    return recorded


def counter_decide(*, tender_id: int, actor: Actor, accept: bool, reason: str = "") -> Tender:
    """The dispatcher accepts or declines a counter-offer; a decline moves the waterfall on at once."""
    with transaction.atomic():
        tender = services.counter_offer_decide(tender_id=tender_id, actor=actor, accept=accept, reason=reason)
        # Accepted: the shipment is assigned and this closes the waterfall; declined: next carrier.
        waterfall_advance(shipment_id=tender.shipment_id)
    return tender


# --- Cancelling ----------------------------------------------------------------


def tender_cancel(*, tender_id: int, actor: Actor, reason: str, stop_waterfall: bool = True) -> Tender:
    """Cancel an open tender and tell a push carrier (remote cancel, after commit)."""
    with transaction.atomic():
        tender = tender_transition(tender_id=tender_id, to_status=TenderStatus.CANCELLED, actor=actor, reason=reason)
        if stop_waterfall:
            waterfall_stop(shipment_id=tender.shipment_id, actor=actor, reason=f"tender cancelled: {reason}")
        _remote_cancel_after_commit(tender)
    return tender


def shipment_cancel(*, shipment_id: int, actor: Actor, reason: str) -> Shipment:
    """Cancel a shipment (services.shipment_cancel), stop its waterfall, cancel its tenders remotely."""
    with transaction.atomic():
        open_ids = list(
            Tender.objects.filter(shipment_id=shipment_id, status__in=TENDER_OPEN).values_list("pk", flat=True)
        )
        shipment = services.shipment_cancel(shipment_id=shipment_id, actor=actor, reason=reason)
        waterfall_stop(shipment_id=shipment_id, actor=actor, reason=f"shipment cancelled: {reason}")
        for tender in Tender.objects.select_related("carrier").filter(pk__in=open_ids):
            _remote_cancel_after_commit(tender)
    return shipment


def _remote_cancel_after_commit(tender: Tender) -> None:
    # Only a push carrier that holds our tender (it was sent) has anything to cancel.
    if not _is_push(tender.carrier) or not tender.external_ref:
        return
    _queued(tender, action="tender.remote_cancel_queued")


def _queued(tender: Tender, *, action: str) -> None:
    """Record that a call to the carrier is owed; ``missions.tendering.subscribers`` enqueues it after commit."""
    with transaction.atomic():
        event_record(
            actor=DISPATCH,
            action=action,
            subject_type="tender",
            subject_id=tender.pk,
            data={"carrier": tender.carrier.slug},
            correlation_id=tender.correlation_id,
            shipment=tender.shipment,
            carrier=tender.carrier,
        )


# --- Expiry -------------------------------------------------------------------


def tenders_expire() -> int:
    """Expire overdue open tenders and advance their waterfalls; returns how many expired.

    Also advances any active waterfall left without an open tender (a carrier
    rejected through the partner API, or a dispatcher declined a counter), so
    the waterfall moves on within one beat period at the latest.
    """
    now = timezone.now()
    expired = 0
    shipment_ids: set[int] = set()
    overdue = list(Tender.objects.filter(status__in=TENDER_OPEN, expires_at__lte=now).values_list("pk", "shipment_id"))
    for tender_id, shipment_id in overdue:
        try:
            with transaction.atomic():
                tender = Tender.objects.select_for_update().get(pk=tender_id)
                # Re-check under the lock: an answer may have arrived meanwhile.
                if tender.status not in TENDER_OPEN or tender.expires_at > timezone.now():
                    continue
                tender_transition(
                    tender_id=tender_id,
                    to_status=TenderStatus.EXPIRED,
                    actor=EXPIRY,
                    reason="no answer before the tender expired",
                )
            expired += 1
            shipment_ids.add(shipment_id)
        except IllegalTransition:
            continue
    stalled = TenderWaterfall.objects.filter(is_active=True).values_list("shipment_id", flat=True)
    shipment_ids.update(stalled)
    for shipment_id in sorted(shipment_ids):
        try:
            waterfall_advance(shipment_id=shipment_id)
        except Exception:  # one bad shipment must not stop the sweep for the others
            log.exception("waterfall advance failed", extra={"shipment_id": shipment_id})
    return expired


# --- Outbound work (called by the Celery tasks) ---------------------------------


def tender_deliver(*, tender_id: int, give_up_when_busy: bool = False) -> str:
    """Send a PENDING tender to its carrier; returns what happened (for logs and tests).

    A full bulkhead raises ``CarrierBusy`` (the task retries) unless
    ``give_up_when_busy``, which fails the tender and moves the waterfall on.

    Idempotent: a tender that is no longer PENDING is not sent again; the
    carrier also dedupes on the tender's Idempotency-Key.
    """

    tender = Tender.objects.select_related("carrier", "shipment").get(pk=tender_id)
    if tender.status != TenderStatus.PENDING:
        return f"skipped: tender is {tender.status}"
    if not _is_push(tender.carrier):
        tender_publish(tender_id=tender.pk)
        return "pull carrier: marked sent"
    channel = channel_for(tender.carrier)
    if channel is not None:
        return _deliver_over(channel.name, channel.deliver, tender)
    try:
        with CarrierClient(tender.carrier) as client:
            state = client.tender_submit(tender)
    except CarrierBusy:
        if give_up_when_busy:
            _tender_send_failed(tender_id=tender.pk, reason="carrier API busy (bulkhead full)")
            return "failed: bulkhead full"
        raise  # the task retries later; nothing was sent
    except CarrierError as exc:
        _tender_send_failed(tender_id=tender.pk, reason=str(exc), outcome_unknown=exc.may_have_landed)
        doubt = " (it may have reached the carrier: reconciled later)" if exc.may_have_landed else ""
        return f"failed: {exc}{doubt}"
    try:
        tender_mark_sent(tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), external_ref=state["ref"])
    except IllegalTransition:
        # Cancelled or expired while the call was in flight: the answer changes
        # nothing here, and the carrier is told to drop the tender it now holds.
        _late_answer(tender_id=tender.pk, state=state)
        _closed_tender_withdraw(tender_id=tender.pk, external_ref=str(state["ref"]))
        return "late: tender closed while sending"
    return tender_apply_remote_state(tender_id=tender.pk, state=state, source="api-sync")


def _deliver_over(name: str, deliver: Any, tender: Tender) -> str:
    """Send over a registered channel: sent (SENT with the wire reference) or failed (waterfall moves on)."""
    try:
        reference = str(deliver(tender))
    except CarrierError as exc:
        _tender_send_failed(tender_id=tender.pk, reason=str(exc))
        return f"failed: {exc}"
    try:
        tender_mark_sent(tender_id=tender.pk, actor=DISPATCH, external_ref=reference)
    except IllegalTransition:
        _closed_tender_withdraw(tender_id=tender.pk, external_ref=reference)
        return "late: tender closed while sending"
    return f"sent over {name}"


def tender_apply_remote_state(*, tender_id: int, state: dict[str, Any], source: str) -> str:
    """Apply a carrier's validated tender state (submit or poll answer) as an offer, once.

    A tender the carrier cancelled or expired on its side is closed here too (the waterfall
    moves on), rather than polled as if it were still pending.
    """
    status = state.get("status")
    offer = state.get("offer")
    if status in ("cancelled", "expired"):
        return tender_closed_by_carrier(
            tender_id=tender_id,
            to_status=TenderStatus.CANCELLED if status == "cancelled" else TenderStatus.EXPIRED,
            reason=f"{'withdrawn' if status == 'cancelled' else 'expired'} by the carrier (status {status})",
            data={"external_ref": state.get("ref"), "remote_status": status, "source": source},
        )
    if status == "pending" or not isinstance(offer, dict):
        return "sent: answer pending"
    tender = Tender.objects.select_related("carrier").get(pk=tender_id)
    if tender.status not in (TenderStatus.SENT, TenderStatus.PENDING):
        # Already answered (e.g. the carrier also posted the answer through the partner API).
        _late_answer(tender_id=tender.pk, state=state)
        return f"late: tender is {tender.status}"
    kind = {"accepted": OfferKind.ACCEPT, "rejected": OfferKind.REJECT, "countered": OfferKind.COUNTER}.get(str(status))
    if kind is None:
        return f"ignored: remote status {status}"
    price = offer.get("price_usd")
    eta = offer.get("eta")
    try:
        offer_record(
            tender_id=tender.pk,
            actor=Actor.for_carrier(tender.carrier),
            kind=kind,
            price_usd=Decimal(str(price)) if price is not None else None,
            vehicle_external_id=str(offer.get("vehicle_id") or ""),
            route_id=str(offer.get("route_id") or ""),
            eta=_parse_dt(eta) if eta else None,
            autonomy_mode=str(offer.get("autonomy_mode") or ""),
            reason=str(offer.get("reason") or ""),
            metadata={"remote_ref": state.get("ref")},
            source=source,
        )
    except Conflict:
        return "late: answer refused"
    except DomainError as exc:
        with transaction.atomic():
            event_record(
                actor=Actor.for_carrier(tender.carrier),
                action="offer.invalid",
                subject_type="tender",
                subject_id=tender.pk,
                data={"reason": exc.message, "state": state},
                correlation_id=tender.correlation_id,
                shipment=tender.shipment,
                carrier=tender.carrier,
            )
        return f"invalid answer: {exc.message}"
    if kind != OfferKind.COUNTER:
        # Reject: next carrier. Accept: the shipment is assigned, so this closes the waterfall.
        waterfall_advance(shipment_id=tender.shipment_id)
    return f"answered: {kind}"


def tender_closed_by_carrier(*, tender_id: int, to_status: str, reason: str, data: dict[str, Any]) -> str:
    """The carrier withdrew or expired a tender it had not answered: close it here and move the waterfall on."""
    with transaction.atomic():
        tender = Tender.objects.select_for_update().select_related("carrier").get(pk=tender_id)
        if tender.status not in (TenderStatus.SENT, TenderStatus.PENDING):
            return f"skipped: tender is {tender.status}"
        tender_transition(
            tender_id=tender.pk, to_status=to_status, actor=Actor.for_carrier(tender.carrier), reason=reason, data=data
        )
    waterfall_advance(shipment_id=tender.shipment_id)
    return f"closed by the carrier: {to_status}"


def _late_answer(*, tender_id: int, state: dict[str, Any]) -> None:
    tender = Tender.objects.select_related("shipment", "carrier").get(pk=tender_id)
    with transaction.atomic():
        event_record(
            actor=Actor.for_carrier(tender.carrier),
            action="offer.ignored",
            subject_type="tender",
            subject_id=tender.pk,
            data={"why": f"tender is {tender.status}", "remote_status": state.get("status")},
            correlation_id=tender.correlation_id,
            shipment=tender.shipment,
            carrier=tender.carrier,
        )


def _closed_tender_withdraw(*, tender_id: int, external_ref: str) -> None:
    with transaction.atomic():
        tender = Tender.objects.select_for_update().select_related("carrier").get(pk=tender_id)
        if tender.status in TENDER_OPEN or tender.external_ref:
            return
        tender.external_ref = external_ref[:120]
        tender.save(update_fields=["external_ref", "updated_at"])
        _remote_cancel_after_commit(tender)


def _tender_send_failed(*, tender_id: int, reason: str, outcome_unknown: bool = False) -> None:
    """The send failed: FAILED, and the waterfall moves on. ``outcome_unknown``: the carrier may hold the
    tender all the same (``missions.tendering.reconcile`` asks it again once it answers)."""
    with transaction.atomic():
        tender = Tender.objects.select_for_update().get(pk=tender_id)
        if tender.status != TenderStatus.PENDING:
            return
        data = {"outcome_unknown": True} if outcome_unknown else None
        tender_transition(
            tender_id=tender_id, to_status=TenderStatus.FAILED, actor=DISPATCH, reason=reason[:300], data=data
        )
        if outcome_unknown:
            Tender.objects.filter(pk=tender_id).update(outcome_unknown_since=timezone.now())
    waterfall_advance(shipment_id=tender.shipment_id)


def remote_cancel_owed(tender: Tender) -> None:
    """Queue telling the carrier to drop a tender it holds that this side has closed (after commit)."""
    _remote_cancel_after_commit(tender)


def tender_remote_cancel(*, tender_id: int) -> str:
    """Tell the carrier a tender is cancelled; a failure leaves an event (the tender stays cancelled here)."""

    tender = Tender.objects.select_related("carrier", "shipment").get(pk=tender_id)
    if not tender.external_ref or not _is_push(tender.carrier):
        return "skipped: nothing to cancel remotely"
    channel = channel_for(tender.carrier)
    if channel is not None:
        try:
            return channel.cancel(tender)
        except CarrierError as exc:
            return f"failed: {exc}"
    try:
        with CarrierClient(tender.carrier) as client:
            client.tender_cancel(tender, reason=tender.status_reason or "cancelled")
    except CarrierError as exc:
        with transaction.atomic():
            event_record(
                actor=DISPATCH,
                action="tender.remote_cancel_failed",
                subject_type="tender",
                subject_id=tender.pk,
                data={"error": str(exc)},
                correlation_id=tender.correlation_id,
                shipment=tender.shipment,
                carrier=tender.carrier,
            )
        return f"failed: {exc}"
    with transaction.atomic():
        event_record(
            actor=DISPATCH,
            action="tender.remote_cancelled",
            subject_type="tender",
            subject_id=tender.pk,
            data={"external_ref": tender.external_ref},
            correlation_id=tender.correlation_id,
            shipment=tender.shipment,
            carrier=tender.carrier,
        )
    return "cancelled remotely"


def _parse_dt(value: str) -> Any:
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value)
