"""The only code that writes EDI state: control numbers, interchanges sent and received, their 997s.

Inbound interchanges go through the same services as the partner API: a 990
is an offer (``dispatch.offer_receive``: same state machine, same events,
same waterfall), a 214 moves the mission (``services.mission_transition``) or
reports an exception. An interchange is applied at most once per sender and
ISA13: a resend replays the first 997 and changes nothing. Whatever is
refused is refused with a located error and a rejecting 997, and nothing of
the refused transaction set is applied.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from missions import services as mission_services
from missions.choices import OfferKind
from missions.edi import transactions as tx_sets
from missions.edi import transports
from missions.edi.status_codes import AT7_STATUS, reason_text, steps_to
from missions.edi.x12 import (
    ELEMENT_INVALID_CODE,
    SEGMENT_ELEMENT_ERRORS,
    SET_NOT_SUPPORTED,
    Delimiters,
    ElementNote,
    FunctionalGroup,
    Interchange,
    Segment,
    SegmentNote,
    TransactionSet,
    X12Error,
    interchange_read,
    interchange_write,
    set_position,
)
from missions.events import Actor, event_record
from missions.models import Carrier, Mission, Tender
from missions.models.edi import (
    EdiAckStatus,
    EdiControlCounter,
    EdiDirection,
    EdiInterchange,
    EdiPartner,
    EdiStatus,
    EdiTransport,
)
from missions.tendering import dispatch
from missions.transitions import MISSION_TERMINAL
from tms_console.domain import DomainError

log = logging.getLogger(__name__)
EDI = Actor.system("edi")
MAX_CONTROL = 999_999_999
TENDER_REF = re.compile(r"TND-(\d{1,12})")


def tender_reference(tender: Tender) -> str:
    """B204 of a tender's 204, echoed as B102 (990) and B1002 (214)."""
    return f"TND-{tender.pk}"


# --- Control numbers -------------------------------------------------------------------------


def control_numbers_allocate(*, partner_id: int, level: str, count: int = 1) -> list[int]:
    """Take the next ``count`` control numbers of one envelope level towards a partner (1 .. 999999999, wrapping).

    The counter row is locked for the transaction, so concurrent senders get distinct numbers.
    """
    with transaction.atomic():
        EdiControlCounter.objects.get_or_create(partner_id=partner_id, level=level)
        counter = EdiControlCounter.objects.select_for_update().get(partner_id=partner_id, level=level)
        numbers = [((counter.value + n - 1) % MAX_CONTROL) + 1 for n in range(1, count + 1)]
        counter.value = numbers[-1]
        counter.save(update_fields=["value"])
    return numbers


def _partner_delimiters(partner: EdiPartner) -> Delimiters:
    return Delimiters(
        element=partner.element_separator,
        component=partner.component_separator,
        segment=partner.segment_terminator,
        repetition=partner.repetition_separator,
    )


def _envelope(partner: EdiPartner, sets: list[tuple[str, list[Segment]]], *, functional_id: str) -> Interchange:
    """An interchange to the partner holding one group of ``sets`` (id code, body), numbered from its counters."""
    now = timezone.now().astimezone(UTC)
    isa13 = control_numbers_allocate(partner_id=partner.pk, level="isa")[0]
    gs06 = control_numbers_allocate(partner_id=partner.pk, level="gs")[0]
    st02s = control_numbers_allocate(partner_id=partner.pk, level="st", count=len(sets))
    version_5010 = partner.version == "005010"
    group = FunctionalGroup(
        functional_id=functional_id,
        sender_code=settings.EDI_SENDER_ID,
        receiver_code=partner.group_code,
        date=now.strftime("%Y%m%d"),
        time=now.strftime("%H%M"),
        control_number=str(gs06),
        version=partner.version,
        transactions=[
            TransactionSet(id_code, f"{st02:04d}"[-9:], body) for (id_code, body), st02 in zip(sets, st02s, strict=True)
        ],
    )
    return Interchange(
        sender_qualifier=settings.EDI_SENDER_QUALIFIER,
        sender_id=settings.EDI_SENDER_ID,
        receiver_qualifier=partner.interchange_qualifier,
        receiver_id=partner.interchange_id,
        date=now.strftime("%y%m%d"),
        time=now.strftime("%H%M"),
        control_number=f"{isa13:09d}",
        version="00501" if version_5010 else "00401",
        usage="T" if partner.test_mode else "P",
        delimiters=_partner_delimiters(partner),
        groups=[group],
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _outbound_record(
    partner: EdiPartner,
    interchange: Interchange,
    text: str,
    *,
    tender: Tender | None = None,
    acknowledges: EdiInterchange | None = None,
) -> EdiInterchange:
    group = interchange.groups[0]
    types = ",".join(dict.fromkeys(t.id_code for t in group.transactions))
    return EdiInterchange.objects.create(
        partner=partner,
        carrier=partner.carrier,
        direction=EdiDirection.OUTBOUND,
        transaction_types=types,
        sender_qualifier=interchange.sender_qualifier,
        sender_id=interchange.sender_id,
        receiver_qualifier=interchange.receiver_qualifier,
        receiver_id=interchange.receiver_id,
        control_number=interchange.control_number,
        group_control_numbers=[group.control_number],
        set_control_numbers=[t.control_number for t in group.transactions],
        version=group.version,
        raw=text,
        content_sha256=_sha256(text),
        status=EdiStatus.SENT,
        ack_status=EdiAckStatus.NOT_EXPECTED if types == "997" else EdiAckStatus.PENDING,
        tender=tender,
        correlation_id=tender.correlation_id if tender is not None else None,
        acknowledges=acknowledges,
        transport=partner.transport,
    )


def _deliver(record: EdiInterchange, *, actor: Actor, action: str) -> None:
    """Hand a recorded outbound interchange to its transport; the outcome is stored and audited."""
    partner = record.partner
    assert partner is not None
    name = f"{record.transaction_types.replace(',', '-')}-{record.control_number}.x12"
    error = ""
    answer = ""
    try:
        where, answer = transports.transport_send(partner, text=record.raw, name=name)
    except transports.TransportError as exc:
        error, where = str(exc), ""
    with transaction.atomic():
        row = EdiInterchange.objects.select_for_update().get(pk=record.pk)
        row.send_count += 1
        row.last_sent_at = timezone.now()
        row.source = (where or row.source)[:200]
        if error:
            row.status = EdiStatus.FAILED
            row.errors = [*(row.errors or []), f"transport: {error}"][-20:]
        else:
            row.status = EdiStatus.SENT
        row.save(update_fields=["send_count", "last_sent_at", "source", "status", "errors"])
        event_record(
            actor=actor,
            action=action,
            subject_type="edi_interchange",
            subject_id=row.pk,
            data={
                "transaction_types": row.transaction_types,
                "control_number": row.control_number,
                "transport": row.transport,
                "ok": not error,
                "error": error or None,
                "send_count": row.send_count,
            },
            correlation_id=row.correlation_id,
            shipment=row.tender.shipment if row.tender else None,
            carrier=partner.carrier,
        )
    record.refresh_from_db()
    if error:
        raise transports.TransportError(error)
    if answer:
        # An HTTPS partner may answer with its 997 in the response body.
        interchange_receive(text=answer, source=f"response to #{record.control_number}", carrier=partner.carrier)


# --- Outbound 204 (the tender channel) ------------------------------------------------------------


def _partner_for(carrier: Carrier) -> EdiPartner | None:
    try:
        partner: EdiPartner = carrier.edi
    except EdiPartner.DoesNotExist:
        return None
    return partner


def carrier_tenders_over_edi(carrier: Carrier) -> bool:
    partner = _partner_for(carrier)
    return partner is not None and partner.exchanges("204")


def load_tender_for(tender: Tender, partner: EdiPartner, *, purpose: str) -> tx_sets.LoadTender:
    shipment = tender.shipment
    stops = (
        tx_sets.Stop(
            1, "CL", "SH", shipment.origin_address, shipment.origin_region,
            shipment.pickup_window_start, shipment.pickup_window_end, shipment.weight_kg,
        ),
        tx_sets.Stop(
            2, "CU", "CN", shipment.destination_address, shipment.destination_region,
            shipment.delivery_window_start, shipment.delivery_window_end,
        ),
    )  # fmt: skip
    return tx_sets.LoadTender(
        shipment_id=tender_reference(tender),
        scac=partner.scac,
        shipment_reference=shipment.reference,
        correlation_id=str(tender.correlation_id),
        stops=stops,
        weight_kg=shipment.weight_kg,
        purpose=purpose,
        respond_by=tender.expires_at,
        hazmat=shipment.hazmat,
        rate_usd=tender.offered_price_usd,
    )


def tender_send_204(tender: Tender, *, purpose: str = tx_sets.PURPOSE_ORIGINAL) -> str:
    """Send a tender (or its cancellation) as a 204; returns the reference it travels under."""
    partner = _partner_for(tender.carrier)
    if partner is None or not partner.exchanges("204"):
        raise transports.TransportError(f"{tender.carrier.slug} takes no 204 load tenders")
    body = tx_sets.load_tender_segments(load_tender_for(tender, partner, purpose=purpose))
    interchange = _envelope(partner, [("204", body)], functional_id=tx_sets.FUNCTIONAL_IDS["204"])
    text = interchange_write(interchange, line_breaks=True)
    record = _outbound_record(partner, interchange, text, tender=tender)
    _deliver(record, actor=EDI, action="edi.interchange_sent")
    return tender_reference(tender)


def tender_cancel_204(tender: Tender) -> str:
    tender_send_204(tender, purpose=tx_sets.PURPOSE_CANCEL)
    return "cancellation sent as a 204 (B2A 01)"


def interchange_resend(*, interchange_id: int, actor: Actor) -> EdiInterchange:
    """An operator sends an outbound interchange again, byte for byte (same control numbers)."""
    record = EdiInterchange.objects.select_related("partner__carrier", "tender__shipment").get(pk=interchange_id)
    if record.direction != EdiDirection.OUTBOUND or record.partner is None:
        raise DomainError("Only an interchange the console sent can be sent again.")
    try:
        _deliver(record, actor=actor, action="edi.interchange_resent")
    except transports.TransportError as exc:
        raise DomainError(f"Sending failed again: {exc}") from None
    return record


# --- Inbound ------------------------------------------------------------------------------------


@dataclass
class Receipt:
    """What became of an inbound interchange: its record and the 997 text to hand back (if any)."""

    record: EdiInterchange
    ack_text: str
    duplicate: bool = False


def _located(note: SegmentNote) -> str:
    where = f"segment {note.segment}" if note.segment else "transaction set"
    if note.position:
        where += f" (position {note.position})"
    if note.elements:
        where += f", element {note.elements[0].position}"
    return f"{where}: {note.message}"


def interchange_receive(*, text: str, source: str, carrier: Carrier | None = None) -> Receipt:
    """Read, check, apply and acknowledge one inbound interchange (see the module docstring).

    ``carrier``: the authenticated caller (API) or the folder's owner; the envelope's sender must be it.
    """
    content_hash = _sha256(text)
    try:
        interchange = interchange_read(text)
    except X12Error as exc:
        record = EdiInterchange.objects.create(
            carrier=carrier,
            partner=_partner_for(carrier) if carrier else None,
            direction=EdiDirection.INBOUND,
            raw=text[:200_000],
            content_sha256=content_hash,
            status=EdiStatus.REJECTED,
            ack_status=EdiAckStatus.NOT_EXPECTED,
            errors=[str(exc)],
            source=source[:200],
        )
        _received_event(record)
        return Receipt(record=record, ack_text="")
    partner = (
        EdiPartner.objects.select_related("carrier")
        .filter(interchange_qualifier=interchange.sender_qualifier, interchange_id=interchange.sender_id)
        .first()
    )
    errors = list(interchange.errors)
    if partner is None and not errors:
        errors.append(
            f"segment ISA (position 1), element 6: sender {interchange.sender_qualifier}/{interchange.sender_id} "
            "is not a configured trading partner"
        )
    if carrier is not None and partner is not None and partner.carrier_id != carrier.pk:
        errors.append("segment ISA (position 1), element 6: the sender is not the authenticated carrier")
    if (interchange.receiver_qualifier, interchange.receiver_id) != (
        settings.EDI_SENDER_QUALIFIER,
        settings.EDI_SENDER_ID,
    ):
        errors.append(
            f"segment ISA (position 1), element 8: receiver {interchange.receiver_qualifier}/"
            f"{interchange.receiver_id} is not this console"
        )
    previous = None
    if partner is not None and interchange.control_number:
        previous = EdiInterchange.objects.filter(
            direction=EdiDirection.INBOUND,
            sender_qualifier=interchange.sender_qualifier,
            sender_id=interchange.sender_id,
            control_number=interchange.control_number,
            duplicate_of__isnull=True,
        ).first()
    if previous is not None and previous.content_sha256 == content_hash:
        return _duplicate(previous, text, source)
    if previous is not None:
        errors.append(
            f"segment ISA (position 1), element 13: control number {interchange.control_number} was already "
            f"used by interchange {previous.pk} with other content"
        )
    interchange.errors = errors
    types = ",".join(dict.fromkeys(t.id_code for _, t in _sets(interchange)))
    try:
        with transaction.atomic():
            record = EdiInterchange.objects.create(
                partner=partner,
                carrier=partner.carrier if partner else carrier,
                direction=EdiDirection.INBOUND,
                transaction_types=types[:40],
                sender_qualifier=interchange.sender_qualifier,
                sender_id=interchange.sender_id,
                receiver_qualifier=interchange.receiver_qualifier,
                receiver_id=interchange.receiver_id,
                control_number=interchange.control_number[:9],
                group_control_numbers=[g.control_number for g in interchange.groups],
                set_control_numbers=[t.control_number for _, t in _sets(interchange)],
                version=interchange.groups[0].version[:6] if interchange.groups else "",
                raw=text,
                content_sha256=content_hash,
                status=EdiStatus.REJECTED,
                ack_status=EdiAckStatus.PENDING,
                source=source[:200],
                duplicate_of=previous,
            )
    except IntegrityError:
        # The same interchange arrived twice at once: the other receipt applied it.
        first = EdiInterchange.objects.get(
            direction=EdiDirection.INBOUND,
            sender_qualifier=interchange.sender_qualifier,
            sender_id=interchange.sender_id,
            control_number=interchange.control_number,
            duplicate_of__isnull=True,
        )
        return _duplicate(first, text, source)
    if not errors and partner is not None:
        _apply(interchange, partner, record)
    return _conclude(interchange, partner, record)


def _sets(interchange: Interchange) -> list[tuple[FunctionalGroup, TransactionSet]]:
    return [(g, t) for g in interchange.groups for t in g.transactions]


def _duplicate(previous: EdiInterchange, text: str, source: str) -> Receipt:
    record = EdiInterchange.objects.create(
        partner=previous.partner,
        carrier=previous.carrier,
        direction=EdiDirection.INBOUND,
        transaction_types=previous.transaction_types,
        sender_qualifier=previous.sender_qualifier,
        sender_id=previous.sender_id,
        receiver_qualifier=previous.receiver_qualifier,
        receiver_id=previous.receiver_id,
        control_number=previous.control_number,
        version=previous.version,
        raw=text,
        content_sha256=previous.content_sha256,
        status=EdiStatus.DUPLICATE,
        ack_status=EdiAckStatus.NOT_EXPECTED,
        errors=[f"resend of interchange {previous.pk} (ISA13 {previous.control_number}): nothing applied again"],
        source=source[:200],
        duplicate_of=previous,
        ack=previous.ack,
        tender=previous.tender,
        mission=previous.mission,
        correlation_id=previous.correlation_id,
    )
    _received_event(record)
    return Receipt(record=record, ack_text=previous.ack.raw if previous.ack else "", duplicate=True)


def _apply(interchange: Interchange, partner: EdiPartner, record: EdiInterchange) -> None:
    """Apply every transaction set of the groups that passed the envelope checks."""
    for group in interchange.groups:
        if group.group_codes:
            continue
        for tx in group.transactions:
            if not tx.accepted:
                continue
            if not partner.exchanges(tx.id_code) or tx.id_code == "204":
                tx.set_codes.append(SET_NOT_SUPPORTED)
                continue
            expected = tx_sets.FUNCTIONAL_IDS.get(tx.id_code)
            if expected != group.functional_id:
                tx.set_codes.append(SET_NOT_SUPPORTED)
                continue
            try:
                if tx.id_code == "990":
                    _apply_990(tx, partner, record, interchange)
                elif tx.id_code == "214":
                    _apply_214(tx, partner, record, interchange)
                elif tx.id_code == "997":
                    _apply_997(tx, partner, record)
            except tx_sets.Refused as exc:
                tx.refuse(exc.note)


def _tender_of(tx: TransactionSet, segment: Segment | None, element: int, partner: EdiPartner) -> Tender:
    value = segment.get(element) if segment is not None else ""
    match = TENDER_REF.fullmatch(value)
    tender = (
        Tender.objects.select_related("shipment", "carrier")
        .filter(pk=int(match.group(1)), carrier=partner.carrier)
        .first()
        if match
        else None
    )
    if tender is None:
        raise _refusal(tx, segment, element, f"no tender '{value}' was sent to {partner.carrier.slug}")
    return tender


def _refusal(tx: TransactionSet, segment: Segment | None, element: int, message: str) -> tx_sets.Refused:
    if segment is None:
        return tx_sets.Refused(SegmentNote("", 0, SEGMENT_ELEMENT_ERRORS, message))
    return tx_sets.Refused(
        SegmentNote(
            segment.id,
            set_position(tx, segment),
            SEGMENT_ELEMENT_ERRORS,
            message,
            (ElementNote(element, ELEMENT_INVALID_CODE, segment.get(element)[:99], message),),
            position=segment.position,
        )
    )


def _link(record: EdiInterchange, tender: Tender, mission: Mission | None = None) -> None:
    fields = []
    if record.tender_id is None:
        record.tender, record.correlation_id = tender, tender.correlation_id
        fields += ["tender", "correlation_id"]
    if mission is not None and record.mission_id is None:
        record.mission = mission
        fields.append("mission")
    if fields:
        record.save(update_fields=fields)


def _apply_990(tx: TransactionSet, partner: EdiPartner, record: EdiInterchange, interchange: Interchange) -> None:
    response = tx_sets.tender_response_read(tx)
    b1 = next(s for s in tx.body if s.id == "B1")
    tender = _tender_of(tx, b1, 2, partner)
    _link(record, tender)
    accept = response.action == tx_sets.ACCEPT
    try:
        # The same service an API offer goes through: state machine, events, waterfall.
        dispatch.offer_receive(
            tender_id=tender.pk,
            actor=Actor.for_carrier(partner.carrier),
            kind=OfferKind.ACCEPT if accept else OfferKind.REJECT,
            price_usd=tender.offered_price_usd if accept else None,
            reason="" if accept else (response.reason or "declined over EDI (990 B104 D)"),
            metadata={
                "edi": {
                    "interchange": interchange.control_number,
                    "set": tx.control_number,
                    "carrier_reference": response.carrier_reference,
                }
            },
            source="edi",
        )
    except DomainError as exc:
        raise _refusal(tx, b1, 2, f"tender {tender_reference(tender)}: {exc.message}") from None
    mission = Mission.objects.filter(tender=tender).first()
    if mission is not None:
        _link(record, tender, mission)


def _apply_214(tx: TransactionSet, partner: EdiPartner, record: EdiInterchange, interchange: Interchange) -> None:
    status = tx_sets.shipment_status_read(tx)
    b10 = next(s for s in tx.body if s.id == "B10")
    tender = _tender_of(tx, b10, 2, partner)
    mission = Mission.objects.filter(tender=tender).first()
    if mission is None:
        raise _refusal(tx, b10, 2, f"tender {tender_reference(tender)} has no mission (it is {tender.status})")
    _link(record, tender, mission)
    actor = Actor.for_carrier(partner.carrier)
    at7s = [s for s in tx.body if s.id == "AT7" and s.get(1)]
    try:
        # One savepoint per set: a refused report leaves none of the set's reports applied.
        with transaction.atomic():
            for report, segment in zip(status.reports, at7s, strict=True):
                _apply_report(tx, segment, report, mission.pk, actor, interchange)
    except DomainError as exc:
        raise _refusal(tx, b10, 2, f"mission {mission.pk}: {exc.message}") from None


def _apply_report(
    tx: TransactionSet,
    segment: Segment,
    report: tx_sets.StatusReport,
    mission_id: int,
    actor: Actor,
    interchange: Interchange,
) -> None:
    mapping = AT7_STATUS.get(report.code)
    mission = Mission.objects.select_related("shipment", "carrier").get(pk=mission_id)
    where = ", ".join(p for p in (report.city, report.region) if p)
    reason = f"EDI 214 AT7 {report.code}" + (f" ({mapping.meaning})" if mapping else "")
    reason += f" at {report.occurred_at.isoformat()}" + (f", {where}" if where else "")
    data = {"edi": {"interchange": interchange.control_number, "set": tx.control_number, "at7": report.code}}
    if mapping is not None and mapping.mission_status is not None:
        if mission.status in MISSION_TERMINAL:
            raise _refusal(
                tx, segment, 1, f"mission {mission.pk} is {mission.status}; status {report.code} cannot apply"
            )
        for step in steps_to(mission.status, mapping.mission_status):
            mission_services.mission_transition(
                mission_id=mission.pk, to_status=step, actor=actor, reason=reason, data=data
            )
        return
    if mapping is not None and mapping.exception is not None:
        mission_services.mission_exception_report(
            mission_id=mission.pk,
            kind=mapping.exception,
            actor=actor,
            detail=f"{mapping.meaning}: {reason_text(report.reason)}" if report.reason else mapping.meaning,
            data={**data, "reason_code": report.reason},
            occurred_at=report.occurred_at,
        )
        return
    # A status that moves nothing (arrived at pick-up, an estimate, a code outside the table): on the timeline.
    event_record(
        actor=actor,
        action="edi.status_reported",
        subject_type="mission",
        subject_id=mission.pk,
        data={**data, "code": report.code, "meaning": mapping.meaning if mapping else "", "reason": report.reason,
              "occurred_at": report.occurred_at, "location": where},
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )  # fmt: skip


def _apply_997(tx: TransactionSet, partner: EdiPartner, record: EdiInterchange) -> None:
    ack = tx_sets.ack_read(tx)
    # Group control numbers are unique per partner until the counter wraps: the newest match is the one.
    ours = EdiInterchange.objects.filter(partner=partner, direction=EdiDirection.OUTBOUND).exclude(
        transaction_types="997"
    )
    target = next(
        (o for o in ours.order_by("-id")[:5000].iterator() if ack.control_number in (o.group_control_numbers or [])),
        None,
    )
    if target is None:
        ak1 = next(s for s in tx.body if s.id == "AK1")
        raise _refusal(tx, ak1, 2, f"no group {ack.control_number} was sent to {partner.carrier.slug}")
    status = {"A": EdiAckStatus.ACCEPTED, "E": EdiAckStatus.ACCEPTED, "P": EdiAckStatus.PARTIAL}.get(
        ack.code, EdiAckStatus.REJECTED
    )
    with transaction.atomic():
        target.ack_status, target.ack = status, record
        target.save(update_fields=["ack_status", "ack"])
        record.acknowledges = target
        record.ack_status = EdiAckStatus.NOT_EXPECTED
        record.save(update_fields=["acknowledges", "ack_status"])
        event_record(
            actor=Actor.for_carrier(partner.carrier),
            action="edi.acknowledged",
            subject_type="edi_interchange",
            subject_id=target.pk,
            data={"control_number": target.control_number, "group": ack.control_number, "code": ack.code,
                  "accepted_sets": ack.accepted, "sets": ack.included},
            correlation_id=target.correlation_id,
            carrier=partner.carrier,
        )  # fmt: skip


def _conclude(interchange: Interchange, partner: EdiPartner | None, record: EdiInterchange) -> Receipt:
    """Record the outcome, write and send the 997 (never for a 997), and audit the receipt."""
    rejected_all = bool(interchange.errors)
    acks = [tx_sets.group_ack(g, interchange_errors=rejected_all) for g in interchange.groups]
    errors = list(interchange.errors)
    for group in interchange.groups:
        if group.group_codes:
            errors.append(f"segment GS (position {group.position}): group {group.control_number} rejected "
                          f"(AK905 {', '.join(group.group_codes)})")  # fmt: skip
        for tx in group.transactions:
            errors.extend(_located(n) for n in tx.notes)
            codes = [c for c in tx.set_codes if c != "5"]
            if codes:
                errors.append(f"segment ST (position {tx.position}): set {tx.control_number} rejected (AK502 "
                              f"{', '.join(codes)})")  # fmt: skip
    accepted = sum(a.accepted for a in acks)
    total = sum(a.included for a in acks)
    if rejected_all or accepted == 0:
        status = EdiStatus.REJECTED
    else:
        status = EdiStatus.ACCEPTED if accepted == total else EdiStatus.PARTIAL
    record.status = status
    record.errors = errors[:50]
    record.save(update_fields=["status", "errors"])
    ack_text = ""
    needs_ack = [a for g, a in zip(interchange.groups, acks, strict=True) if g.functional_id != "FA"]
    if partner is not None and needs_ack and partner.exchanges("997"):
        bodies = [("997", tx_sets.ack_segments(a)) for a in needs_ack]
        envelope = _envelope(partner, bodies, functional_id=tx_sets.FUNCTIONAL_IDS["997"])
        ack_text = interchange_write(envelope, line_breaks=True)
        ack_record = _outbound_record(partner, envelope, ack_text, acknowledges=record)
        if record.tender_id:
            ack_record.tender_id, ack_record.correlation_id = record.tender_id, record.correlation_id
            ack_record.save(update_fields=["tender", "correlation_id"])
        record.ack = ack_record
        record.ack_status = {
            EdiStatus.ACCEPTED: EdiAckStatus.ACCEPTED,
            EdiStatus.PARTIAL: EdiAckStatus.PARTIAL,
        }.get(EdiStatus(status), EdiAckStatus.REJECTED)
        record.save(update_fields=["ack", "ack_status"])
        try:
            _deliver(ack_record, actor=EDI, action="edi.interchange_sent")
        except transports.TransportError:
            log.warning("997 not delivered", extra={"interchange": ack_record.pk})
    elif record.ack_status == EdiAckStatus.PENDING:
        record.ack_status = EdiAckStatus.NOT_EXPECTED
        record.save(update_fields=["ack_status"])
    _received_event(record)
    return Receipt(record=record, ack_text=ack_text)


def _received_event(record: EdiInterchange) -> None:
    with transaction.atomic():
        event_record(
            actor=Actor.for_carrier(record.carrier) if record.carrier else EDI,
            action="edi.interchange_received",
            subject_type="edi_interchange",
            subject_id=record.pk,
            data={
                "transaction_types": record.transaction_types,
                "control_number": record.control_number,
                "sender": f"{record.sender_qualifier}/{record.sender_id}",
                "status": record.status,
                "errors": (record.errors or [])[:5],
                "duplicate_of": record.duplicate_of_id,
            },
            correlation_id=record.correlation_id,
            shipment=record.tender.shipment if record.tender else None,
            mission=record.mission,
            carrier=record.carrier,
        )


# --- Folder transport -----------------------------------------------------------------------------


def folder_poll() -> int:
    """Read every file waiting in the inbound folders of folder-transport partners; returns how many."""
    count = 0
    for partner in EdiPartner.objects.select_related("carrier").filter(is_active=True, transport=EdiTransport.FOLDER):
        for path in transports.inbound_files(partner):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            try:
                interchange_receive(text=text, source=f"folder:{path.name}", carrier=partner.carrier)
            except Exception:  # one bad file must not stop the others; it stays for a look
                log.exception("EDI file not processed", extra={"file": str(path)})
                continue
            transports.inbound_file_done(path)
            count += 1
    return count
