"""The transaction sets the console exchanges, as typed values: 204, 990, 214 and 997.

Each has a ``*_segments`` writer (the body between ST and SE) and a ``*_read``
reader that raises ``Refused`` with the AK3/AK4 note of the first segment or
element it cannot accept. Segment usage and code values: docs/edi.md.
Plain module, no Django (the simulated carrier uses it too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from missions.edi.x12 import (
    ELEMENT_INVALID_CODE,
    ELEMENT_INVALID_DATE,
    ELEMENT_INVALID_TIME,
    ELEMENT_MANDATORY_MISSING,
    SEGMENT_ELEMENT_ERRORS,
    SEGMENT_MANDATORY_MISSING,
    ElementNote,
    FunctionalGroup,
    Segment,
    SegmentNote,
    TransactionSet,
    set_position,
)

FUNCTIONAL_IDS = {"204": "SM", "990": "GF", "214": "QM", "997": "FA"}
TRANSACTION_NAMES = {
    "204": "Motor carrier load tender",
    "990": "Response to a load tender",
    "214": "Shipment status",
    "997": "Functional acknowledgement",
}
# B2A01 set purpose codes used.
PURPOSE_ORIGINAL, PURPOSE_CANCEL = "00", "01"
# B104 reservation action codes.
ACCEPT, DECLINE = "A", "D"
# L11 / N9 reference qualifiers used.
REF_SHIPPER_ID, REF_CARRIER_REF, REF_MUTUAL = "SI", "CN", "ZZ"
CORRELATION_REF = "CID"  # L11*CID*ZZ*<uuid>: the UUID does not fit L1101 (30 characters in 004010)


class Refused(ValueError):
    """A transaction set this reader cannot accept; ``note`` is its AK3/AK4."""

    def __init__(self, note: SegmentNote) -> None:
        super().__init__(note.message)
        self.note = note


def _refuse(tx: TransactionSet, segment: Segment | None, element: int, code: str, message: str) -> Refused:
    if segment is None:
        return Refused(SegmentNote("", 0, SEGMENT_MANDATORY_MISSING, message))
    value = segment.get(element)
    return Refused(
        SegmentNote(
            segment.id,
            set_position(tx, segment),
            SEGMENT_ELEMENT_ERRORS,
            message,
            (ElementNote(element, code, value[:99], message),),
            position=segment.position,
        )
    )


def _missing(segment_id: str, what: str) -> Refused:
    return Refused(
        SegmentNote(segment_id, 0, SEGMENT_MANDATORY_MISSING, f"the {segment_id} segment ({what}) is missing")
    )


def _first(tx: TransactionSet, segment_id: str) -> Segment | None:
    return next((s for s in tx.body if s.id == segment_id), None)


def _required(tx: TransactionSet, segment: Segment, element: int, what: str) -> str:
    value = segment.get(element)
    if not value.strip():
        raise _refuse(
            tx, segment, element, ELEMENT_MANDATORY_MISSING, f"{segment.id}{element:02d} ({what}) is required"
        )
    return value


def x12_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%d")


def x12_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H%M")


def _fixed(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# Time codes (element 623) the reader converts to UTC. xT is the zone's civil time (standard or daylight
# as the date falls), xS its standard time, xD its daylight time. LT (local time) is refused: it needs
# the stop's own time zone, which the segment does not carry.
TIME_CODES: dict[str, tzinfo] = {
    "": UTC,
    "UT": UTC,
    "GM": UTC,
    "ET": ZoneInfo("America/New_York"),
    "ES": _fixed(-5),
    "ED": _fixed(-4),
    "CT": ZoneInfo("America/Chicago"),
    "CS": _fixed(-6),
    "CD": _fixed(-5),
    "MT": ZoneInfo("America/Denver"),
    "MS": _fixed(-7),
    "MD": _fixed(-6),
    "PT": ZoneInfo("America/Los_Angeles"),
    "PS": _fixed(-8),
    "PD": _fixed(-7),
    "AT": ZoneInfo("America/Anchorage"),
    "AS": _fixed(-9),
    "AD": _fixed(-8),
    "HT": ZoneInfo("Pacific/Honolulu"),
    "HS": _fixed(-10),
    "HD": _fixed(-9),
}


def _parse_moment(tx: TransactionSet, segment: Segment, date_at: int, time_at: int, zone_at: int) -> datetime:
    """A date, time and time code as a UTC instant."""
    date, time = segment.get(date_at), segment.get(time_at) or "0000"
    if not re.fullmatch(r"\d{8}", date):
        raise _refuse(tx, segment, date_at, ELEMENT_INVALID_DATE, f"'{date}' is not a CCYYMMDD date")
    if not re.fullmatch(r"\d{4}(\d{2})?", time):
        raise _refuse(tx, segment, time_at, ELEMENT_INVALID_TIME, f"'{time}' is not an HHMM time")
    zone = segment.get(zone_at)
    if zone not in TIME_CODES:
        raise _refuse(
            tx, segment, zone_at, ELEMENT_INVALID_CODE, f"time code '{zone}' is not UTC or a North American zone"
        )
    try:
        local = datetime.strptime(date + time[:4], "%Y%m%d%H%M").replace(tzinfo=TIME_CODES[zone])
    except ValueError:
        raise _refuse(tx, segment, date_at, ELEMENT_INVALID_DATE, f"'{date}' is not a calendar date") from None
    return local.astimezone(UTC)


POUND_KG = Decimal("0.45359237")


def _weight_kg(tx: TransactionSet, segment: Segment, value_at: int, unit_at: int) -> int | None:
    """A weight and its unit code (K kilograms, L pounds; none: kilograms) in whole kilograms."""
    value, unit = segment.get(value_at), segment.get(unit_at)
    if not value:
        return None
    try:
        weight = Decimal(value)
    except InvalidOperation:
        raise _refuse(tx, segment, value_at, ELEMENT_INVALID_CODE, f"weight '{value}' is not a number") from None
    if unit == "L":
        weight *= POUND_KG
    elif unit not in ("", "K"):
        raise _refuse(tx, segment, unit_at, ELEMENT_INVALID_CODE, f"weight unit '{unit}' is not K or L")
    return int(weight.to_integral_value())


# --- 204 Motor carrier load tender ------------------------------------------------------------


# S502 stop reason codes of a pick-up (CL complete load, LD load, PL part load); the rest deliver.
PICKUP_REASONS = frozenset({"CL", "LD", "PL"})


@dataclass(frozen=True)
class Stop:
    sequence: int
    reason: str  # S502: CL complete load / LD load (pick-up), CU complete unload / UL unload (delivery)
    party: str  # N101: SH ship from, CN consignee
    name: str
    region: str
    window_start: datetime
    window_end: datetime
    weight_kg: int | None = None


@dataclass(frozen=True)
class LoadTender:
    shipment_id: str  # B204: the console's tender id (TND-<id>), echoed in the 990 and 214
    scac: str  # B202
    shipment_reference: str
    correlation_id: str
    stops: tuple[Stop, ...]
    weight_kg: int
    purpose: str = PURPOSE_ORIGINAL
    respond_by: datetime | None = None
    hazmat: bool = False
    rate_usd: Decimal | None = None  # the pre-approved or offered rate (L305, in cents on the wire)
    payment: str = "PP"  # B206: prepaid by the shipper


def load_tender_segments(tender: LoadTender) -> list[Segment]:
    out = [
        Segment.of("B2", "", tender.scac, "", tender.shipment_id, "", tender.payment),
        Segment.of("B2A", tender.purpose),
        Segment.of("L11", tender.shipment_reference, REF_SHIPPER_ID),
        Segment.of("L11", CORRELATION_REF, REF_MUTUAL, tender.correlation_id),
    ]
    if tender.respond_by is not None:
        # 64 must respond by (date), 1 must respond by (time)
        out.append(Segment.of("G62", "64", x12_date(tender.respond_by), "1", x12_time(tender.respond_by), "UT"))
    out.append(Segment.of("MS3", tender.scac, "B", "", "M"))
    if tender.hazmat:
        out.append(Segment.of("AT5", "HM"))
    for stop in tender.stops:
        pickup = stop.reason in PICKUP_REASONS
        out.append(Segment.of("S5", stop.sequence, stop.reason, stop.weight_kg, "K" if stop.weight_kg else ""))
        # Pick-up: 37 ship not before / 38 ship no later; delivery: 53 deliver not before / 54 deliver no later.
        first, last = ("37", "38") if pickup else ("53", "54")
        early, late = ("I", "K") if pickup else ("G", "L")  # earliest / latest requested time qualifiers
        out.append(Segment.of("G62", first, x12_date(stop.window_start), early, x12_time(stop.window_start), "UT"))
        out.append(Segment.of("G62", last, x12_date(stop.window_end), late, x12_time(stop.window_end), "UT"))
        if stop.weight_kg:
            out.append(Segment.of("AT8", "G", "K", stop.weight_kg))
        out.append(Segment.of("N1", stop.party, stop.name[:60]))
        out.append(Segment.of("N4", "", stop.region, "", "US"))
    cents = None if tender.rate_usd is None else int((tender.rate_usd * 100).to_integral_value())
    out.append(Segment.of("L3", "", "", "", "", cents))
    return out


def load_tender_read(tx: TransactionSet) -> LoadTender:
    b2 = _first(tx, "B2")
    if b2 is None:
        raise _missing("B2", "beginning segment for shipment information")
    b2a = _first(tx, "B2A")
    if b2a is None:
        raise _missing("B2A", "set purpose")
    purpose = _required(tx, b2a, 1, "set purpose code")
    if purpose not in ("00", "01", "04", "05"):
        raise _refuse(tx, b2a, 1, ELEMENT_INVALID_CODE, f"set purpose '{purpose}' is not 00, 01, 04 or 05")
    references: dict[str, Segment] = {}
    for s in tx.body:
        if s.id == "L11" and not _in_stop(tx, s):
            references.setdefault(s.get(2), s)  # the first of a qualifier is the one read
    correlation = references.get(REF_MUTUAL)
    stops: list[Stop] = []
    current: dict[str, object] | None = None
    weight = 0
    for segment in tx.body:
        if segment.id == "S5":
            if current is not None:
                stops.append(_stop(tx, current))
            reason = _required(tx, segment, 2, "stop reason code")
            stop_weight = _weight_kg(tx, segment, 3, 4)
            current = {
                "sequence": int(segment.get(1) or len(stops) + 1),
                "reason": reason,
                "weight_kg": stop_weight,
                "s5": segment,
            }
            weight = max(weight, stop_weight or 0)
        elif current is not None and segment.id == "G62":
            moment = _parse_moment(tx, segment, 2, 4, 5)
            code = segment.get(1)
            # 37/53 not before, 10/68 requested pick-up/delivery: a window's start; 38/54 no later than: its
            # end; any other (69/70 scheduled pick-up/delivery, an appointment): one instant for both.
            key = "start" if code in ("37", "53", "10", "68") else "end" if code in ("38", "54") else "at"
            current.setdefault(key, moment)
        elif current is not None and segment.id == "N1":
            current["party"], current["name"] = segment.get(1), segment.get(2)
        elif current is not None and segment.id == "N4":
            current["region"] = segment.get(2)
    if current is not None:
        stops.append(_stop(tx, current))
    g62 = next((s for s in tx.body if s.id == "G62" and s.get(1) == "64"), None)
    l3 = _first(tx, "L3")
    rate = Decimal(l3.get(5)) / 100 if l3 is not None and l3.get(5).isdigit() else None
    return LoadTender(
        shipment_id=_required(tx, b2, 4, "shipment identification number"),
        scac=b2.get(2),
        payment=b2.get(6),
        purpose=purpose,
        shipment_reference=references[REF_SHIPPER_ID].get(1) if REF_SHIPPER_ID in references else "",
        correlation_id=correlation.get(3) if correlation is not None else "",
        respond_by=_parse_moment(tx, g62, 2, 4, 5) if g62 is not None else None,
        hazmat=any(s.id == "AT5" and s.get(1) == "HM" for s in tx.body),
        stops=tuple(stops),
        weight_kg=weight,
        rate_usd=rate,
    )


def _in_stop(tx: TransactionSet, segment: Segment) -> bool:
    for s in tx.body:
        if s.id == "S5":
            return True
        if s is segment:
            return False
    return False


def _stop(tx: TransactionSet, values: dict[str, object]) -> Stop:
    at = values.get("at")
    start = values.get("start") or at or values.get("end")
    end = values.get("end") or at or start
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        s5 = values["s5"]
        assert isinstance(s5, Segment)
        raise Refused(
            SegmentNote(
                "G62",
                set_position(tx, s5),
                SEGMENT_MANDATORY_MISSING,
                f"stop {values['sequence']} has no G62 date: the console needs each stop's window",
                position=s5.position,
            )
        )
    return Stop(
        sequence=int(str(values["sequence"])),
        reason=str(values["reason"]),
        party=str(values.get("party", "")),
        name=str(values.get("name", "")),
        region=str(values.get("region", "")),
        window_start=start,
        window_end=end,
        weight_kg=values.get("weight_kg"),  # type: ignore[arg-type]
    )


# --- 990 Response to a load tender ------------------------------------------------------------


@dataclass(frozen=True)
class TenderResponse:
    scac: str  # B101
    shipment_id: str  # B102: the B204 it answers
    date: str  # B103
    action: str  # B104: A accept, D decline
    carrier_reference: str = ""  # N9*CN (the carrier's load number)
    reason: str = ""  # K101 (why a decline)


def tender_response_segments(response: TenderResponse) -> list[Segment]:
    out = [Segment.of("B1", response.scac, response.shipment_id, response.date, response.action)]
    if response.carrier_reference:
        out.append(Segment.of("N9", REF_CARRIER_REF, response.carrier_reference))
    if response.reason:
        out.append(Segment.of("K1", response.reason[:30]))
    return out


def tender_response_read(tx: TransactionSet) -> TenderResponse:
    b1 = _first(tx, "B1")
    if b1 is None:
        raise _missing("B1", "beginning segment for booking")
    action = _required(tx, b1, 4, "reservation action code")
    if action not in (ACCEPT, DECLINE):
        raise _refuse(
            tx, b1, 4, ELEMENT_INVALID_CODE, f"reservation action '{action}' is not A (accept) or D (decline)"
        )
    n9 = next((s for s in tx.body if s.id in ("N9", "L11") and REF_CARRIER_REF in (s.get(1), s.get(2))), None)
    carrier_ref = ""
    if n9 is not None:
        carrier_ref = n9.get(2) if n9.id == "N9" else n9.get(1)
    remarks = " ".join(s.get(1) for s in tx.body if s.id == "K1" and s.get(1))
    return TenderResponse(
        scac=b1.get(1),
        shipment_id=_required(tx, b1, 2, "shipment identification number"),
        date=b1.get(3),
        action=action,
        carrier_reference=carrier_ref,
        reason=remarks,
    )


# --- 214 Shipment status ------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusReport:
    code: str  # AT701
    reason: str  # AT702 (NS normal status)
    occurred_at: datetime
    city: str = ""  # MS101
    region: str = ""  # MS102


@dataclass(frozen=True)
class ShipmentStatus:
    carrier_reference: str  # B1001
    shipment_id: str  # B1002: the B204 of the tender
    scac: str  # B1003
    reports: tuple[StatusReport, ...] = field(default_factory=tuple)


def shipment_status_segments(status: ShipmentStatus) -> list[Segment]:
    out = [Segment.of("B10", status.carrier_reference, status.shipment_id, status.scac)]
    for n, report in enumerate(status.reports, start=1):
        out.append(Segment.of("LX", n))
        out.append(
            Segment.of(
                "AT7",
                report.code,
                report.reason,
                "",
                "",
                x12_date(report.occurred_at),
                x12_time(report.occurred_at),
                "UT",
            )
        )
        if report.city or report.region:
            out.append(Segment.of("MS1", report.city, report.region, "US"))
    return out


def shipment_status_read(tx: TransactionSet) -> ShipmentStatus:
    b10 = _first(tx, "B10")
    if b10 is None:
        raise _missing("B10", "beginning segment for shipment status")
    reports: list[StatusReport] = []
    for n, segment in enumerate(tx.body):
        if segment.id != "AT7":
            continue
        code = segment.get(1)
        if not code:
            if segment.get(3):
                continue  # an appointment status (AT703), not a shipment status: nothing to apply
            raise _refuse(tx, segment, 1, ELEMENT_MANDATORY_MISSING, "AT701 (shipment status code) is required")
        if not re.fullmatch(r"[A-Z0-9]{2}", code):
            raise _refuse(tx, segment, 1, ELEMENT_INVALID_CODE, f"'{code}' is not a shipment status code")
        occurred = _parse_moment(tx, segment, 5, 6, 7)
        ms1 = tx.body[n + 1] if n + 1 < len(tx.body) and tx.body[n + 1].id == "MS1" else None
        reports.append(
            StatusReport(
                code=code,
                reason=segment.get(2),
                occurred_at=occurred,
                city=ms1.get(1) if ms1 is not None else "",
                region=ms1.get(2) if ms1 is not None else "",
            )
        )
    if not reports:
        raise _missing("AT7", "shipment status details")
    return ShipmentStatus(
        carrier_reference=b10.get(1),
        shipment_id=_required(tx, b10, 2, "shipment identification number"),
        scac=b10.get(3),
        reports=tuple(reports),
    )


# --- 997 Functional acknowledgement -------------------------------------------------------------


@dataclass(frozen=True)
class SetAck:
    id_code: str
    control_number: str
    code: str  # AK501: A accepted, E accepted with errors noted, R rejected
    set_codes: tuple[str, ...] = ()
    notes: tuple[SegmentNote, ...] = ()


@dataclass(frozen=True)
class GroupAck:
    functional_id: str  # AK101
    control_number: str  # AK102
    code: str  # AK901: A, E, P (partially accepted), R
    included: int
    received: int
    accepted: int
    sets: tuple[SetAck, ...] = ()
    group_codes: tuple[str, ...] = ()


def group_ack(group: FunctionalGroup, *, interchange_errors: bool) -> GroupAck:
    """The acknowledgement of a read (and applied) group; any interchange error rejects it all."""
    sets = []
    for tx in group.transactions:
        rejected = interchange_errors or bool(group.group_codes) or not tx.accepted
        sets.append(
            SetAck(tx.id_code, tx.control_number, "R" if rejected else "A", tuple(tx.set_codes), tuple(tx.notes))
        )
    accepted = sum(1 for s in sets if s.code != "R")
    if accepted == len(sets) and sets:
        code = "A"
    elif accepted == 0:
        code = "R"
    else:
        code = "P"
    return GroupAck(
        functional_id=group.functional_id,
        control_number=group.control_number,
        code=code,
        included=len(group.transactions),
        received=len(group.transactions),
        accepted=accepted,
        sets=tuple(sets),
        group_codes=tuple(group.group_codes),
    )


def ack_segments(ack: GroupAck) -> list[Segment]:
    out = [Segment.of("AK1", ack.functional_id, ack.control_number)]
    for s in ack.sets:
        out.append(Segment.of("AK2", s.id_code, s.control_number))
        for note in s.notes:
            out.append(Segment.of("AK3", note.segment or "ST", note.set_position or "", note.loop, note.code))
            for element in note.elements:
                out.append(
                    Segment.of("AK4", element.position, element.reference, element.code, _ak4_value(element.value))
                )
        out.append(Segment.of("AK5", s.code, *s.set_codes[:5]))
    out.append(Segment.of("AK9", ack.code, ack.included, ack.received, ack.accepted, *ack.group_codes[:5]))
    return out


def _leading_number(value: str) -> int:
    """AK302 / AK401 as a number; AK401 may be a composite (element, component): its first digits."""
    digits = re.match(r"\d+", value)
    return int(digits.group()) if digits else 0


def _ak4_value(value: str) -> str:
    # AK404 copies the bad value; it must not carry delimiters of its own.
    return re.sub(r"[^A-Za-z0-9 .,:/()-]", "", value)[:99]


def ack_read(tx: TransactionSet) -> GroupAck:
    ak1 = _first(tx, "AK1")
    if ak1 is None:
        raise _missing("AK1", "functional group response header")
    ak9 = _first(tx, "AK9")
    if ak9 is None:
        raise _missing("AK9", "functional group response trailer")
    code = _required(tx, ak9, 1, "functional group acknowledge code")
    if code not in ("A", "E", "P", "R", "M", "W", "X"):
        raise _refuse(tx, ak9, 1, ELEMENT_INVALID_CODE, f"'{code}' is not a functional group acknowledge code")
    sets: list[SetAck] = []
    current: tuple[str, str] | None = None
    notes: list[SegmentNote] = []  # the AK3s (each with its AK4s) of the current AK2
    for segment in tx.body:
        if segment.id == "AK2":
            current, notes = (segment.get(1), segment.get(2)), []
        elif segment.id == "AK3" and current is not None:
            notes.append(
                SegmentNote(
                    segment.get(1),
                    _leading_number(segment.get(2)),
                    segment.get(4),
                    f"AK3 at position {segment.position}",
                    loop=segment.get(3),
                    position=segment.position,
                )
            )
        elif segment.id == "AK4" and notes:
            element = ElementNote(
                _leading_number(segment.get(1)), segment.get(3), segment.get(4), reference=segment.get(2)
            )
            last = notes[-1]
            notes[-1] = SegmentNote(
                last.segment, last.set_position, last.code, last.message, (*last.elements, element), last.loop,
                last.position,
            )  # fmt: skip
        elif segment.id == "AK5" and current is not None:
            codes = tuple(e for e in segment.elements[1:] if e)
            sets.append(SetAck(current[0], current[1], segment.get(1), codes, tuple(notes)))
            current, notes = None, []

    def count(n: int) -> int:
        value = ak9.get(n)
        return int(value) if value.isdigit() else 0

    return GroupAck(
        functional_id=_required(tx, ak1, 1, "functional identifier code"),
        control_number=_required(tx, ak1, 2, "group control number"),
        code=code,
        included=count(2),
        received=count(3),
        accepted=count(4),
        sets=tuple(sets),
        group_codes=tuple(e for e in ak9.elements[4:] if e),
    )
