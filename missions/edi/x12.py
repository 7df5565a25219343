"""A typed reader and writer for X12 interchanges (ISA/GS/ST ... SE/GE/IEA).

Plain module, no Django: the simulated carrier uses it too. The reader takes the
delimiters from the fixed-width ISA segment (element separator at offset 3, the
component separator at 104, the segment terminator at 105; from version 00501
ISA11 is the repetition separator), checks every envelope count and control
number, and records each problem where it was found, at the level the 997
reports it:

* interchange problems (no ISA, truncated, IEA count or control number wrong)
  make the whole interchange unusable: every group is rejected;
* group problems (GE count or control number) reject one group (AK905 codes);
* transaction-set problems (SE count or control number, a segment or element
  the transaction's reader refuses) reject one set (AK502 codes, with AK3/AK4).

Codes are those of the 997's data elements 716 (AK905), 718 (AK502),
720 (AK304) and 723 (AK403) in ASC X12 004010.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ISA_LENGTH = 106  # "ISA" + 16 fixed-width elements + 16 separators + the terminator
# Interchange ID qualifiers (ISA05 / ISA07, element I05) of the 004010 code list.
INTERCHANGE_QUALIFIERS = frozenset(
    {"01", "02", "03", "04", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20"}
    | {"21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "NR", "ZZ"}
)
VERSIONS = {"00401": "004010", "00501": "005010"}  # ISA12 -> GS08 (without an industry suffix)
# ISA12 is the version of the envelope segments alone: an ISA12 00400 (or 00204) around a GS08 004010
# group is valid X12 and seen in published interchanges. The ISA/IEA layout is the same from 00200 to
# 00501; what the console reads and writes inside a group is checked on GS08 (VERSIONS).
ENVELOPE_VERSIONS = re.compile(r"00[2-4]\d\d|0050[01]")
REPETITION_FROM = "00402"  # from this ISA12 on, ISA11 is the repetition separator (before: standards id "U")

# AK502 (element 718): transaction set syntax error codes.
SET_NOT_SUPPORTED = "1"
SET_TRAILER_MISSING = "2"
SET_CONTROL_MISMATCH = "3"
SET_COUNT_MISMATCH = "4"
SET_SEGMENTS_IN_ERROR = "5"
SET_CONTROL_NOT_UNIQUE = "23"
# AK905 (element 716): functional group syntax error codes.
GROUP_NOT_SUPPORTED = "1"
GROUP_VERSION_NOT_SUPPORTED = "2"
GROUP_TRAILER_MISSING = "3"
GROUP_CONTROL_MISMATCH = "4"
GROUP_COUNT_MISMATCH = "5"
# AK304 (element 720): segment syntax error codes.
SEGMENT_UNRECOGNIZED = "1"
SEGMENT_UNEXPECTED = "2"
SEGMENT_MANDATORY_MISSING = "3"
SEGMENT_ELEMENT_ERRORS = "8"
# AK403 (element 723): data element syntax error codes.
ELEMENT_MANDATORY_MISSING = "1"
ELEMENT_TOO_LONG = "5"
ELEMENT_INVALID_CODE = "7"
ELEMENT_INVALID_DATE = "8"
ELEMENT_INVALID_TIME = "9"


class X12Error(ValueError):
    """Input that is not an X12 interchange at all, or one the writer refuses; says where."""

    def __init__(self, message: str, *, segment: str = "", position: int | None = None, element: int | None = None):
        where = locate(segment=segment, position=position, element=element)
        super().__init__(f"{where}: {message}" if where else message)
        self.detail = message
        self.segment = segment
        self.position = position
        self.element = element


def locate(*, segment: str = "", position: int | None = None, element: int | None = None) -> str:
    """'segment GE (position 9), element 1' - the same words in errors, the console and docs."""
    parts = []
    if segment:
        parts.append(f"segment {segment}" + (f" (position {position})" if position is not None else ""))
    elif position is not None:
        parts.append(f"segment position {position}")
    if element is not None:
        parts.append(f"element {element}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Delimiters:
    element: str = "*"
    component: str = ">"
    segment: str = "~"
    repetition: str = "^"

    def check(self) -> None:
        chars = [self.element, self.component, self.segment, self.repetition]
        if any(len(c) != 1 for c in chars) or len(set(chars)) != 4:
            raise X12Error("the four delimiters must be four different single characters")
        if any(c.isalnum() or c == " " for c in chars):
            raise X12Error("a delimiter cannot be a letter, a digit or a space")


@dataclass(frozen=True)
class Segment:
    """One segment: its id and its elements (``elements[0]`` is element 1)."""

    id: str
    elements: tuple[str, ...] = ()
    position: int = 0  # 1-based position in the interchange (0: built, not read)

    def get(self, n: int) -> str:
        """Element ``n`` (1-based), empty when absent."""
        return self.elements[n - 1] if 0 < n <= len(self.elements) else ""

    @classmethod
    def of(cls, segment_id: str, *elements: object) -> Segment:
        """Build a segment; trailing empty elements are dropped, as X12 requires."""
        values = ["" if e is None else str(e) for e in elements]
        while values and values[-1] == "":
            values.pop()
        return cls(segment_id, tuple(values))


@dataclass(frozen=True)
class ElementNote:
    """AK4: one data element in error."""

    position: int
    code: str
    value: str = ""
    message: str = ""
    reference: str = ""  # AK402: the data element reference number, when known


@dataclass(frozen=True)
class SegmentNote:
    """AK3: one segment in error, with its element notes."""

    segment: str
    set_position: int  # position in the transaction set, ST = 1
    code: str
    message: str
    elements: tuple[ElementNote, ...] = ()
    loop: str = ""
    position: int | None = None  # in the interchange, for the located error


@dataclass
class TransactionSet:
    id_code: str
    control_number: str
    # The body: every segment between ST and SE (exclusive).
    body: list[Segment] = field(default_factory=list)
    implementation_reference: str = ""  # ST03 (005010)
    position: int = 0
    set_codes: list[str] = field(default_factory=list)  # AK502 codes
    notes: list[SegmentNote] = field(default_factory=list)  # AK3/AK4

    @property
    def accepted(self) -> bool:
        return not self.set_codes and not self.notes

    def refuse(self, note: SegmentNote) -> None:
        self.notes.append(note)
        if SET_SEGMENTS_IN_ERROR not in self.set_codes:
            self.set_codes.append(SET_SEGMENTS_IN_ERROR)


@dataclass
class FunctionalGroup:
    functional_id: str
    sender_code: str
    receiver_code: str
    date: str
    time: str
    control_number: str
    version: str = "004010"
    agency: str = "X"
    transactions: list[TransactionSet] = field(default_factory=list)
    position: int = 0
    group_codes: list[str] = field(default_factory=list)  # AK905 codes


@dataclass
class Interchange:
    sender_qualifier: str
    sender_id: str
    receiver_qualifier: str
    receiver_id: str
    date: str  # YYMMDD
    time: str  # HHMM
    control_number: str  # ISA13, nine digits
    version: str = "00401"  # ISA12
    usage: str = "P"  # ISA15: P production, T test
    ack_requested: str = "0"  # ISA14
    delimiters: Delimiters = field(default_factory=Delimiters)
    groups: list[FunctionalGroup] = field(default_factory=list)
    authorization_qualifier: str = "00"
    authorization: str = ""
    security_qualifier: str = "00"
    security: str = ""
    standards_id: str = "U"  # ISA11 in 004010
    # Problems that make the whole interchange unusable (every group is rejected).
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.errors


# --- Reading ------------------------------------------------------------------------------


def delimiters_read(text: str) -> Delimiters:
    """The delimiters an interchange declares in its ISA segment."""
    start = text.lstrip()
    if not start.startswith("ISA"):
        raise X12Error("an interchange starts with an ISA segment", segment="ISA", position=1)
    if len(start) < ISA_LENGTH:
        raise X12Error(
            f"the ISA segment is {ISA_LENGTH} characters; the input ends after {len(start)}", segment="ISA", position=1
        )
    element = start[3]
    fields = start[:ISA_LENGTH].split(element)
    if len(fields) != 17:
        raise X12Error(f"the ISA segment has 16 elements; found {len(fields) - 1}", segment="ISA", position=1)
    repetition = fields[11] if fields[12] >= REPETITION_FROM and len(fields[11]) == 1 else "^"
    delimiters = Delimiters(element=element, component=start[104], segment=start[105], repetition=repetition)
    if len({delimiters.element, delimiters.component, delimiters.segment}) != 3:
        raise X12Error("the element, component and segment delimiters must differ", segment="ISA", position=1)
    if repetition in (element, start[104], start[105]):
        delimiters = Delimiters(element=element, component=start[104], segment=start[105], repetition="\x1d")
    return delimiters


def segments_read(text: str, delimiters: Delimiters) -> tuple[list[Segment], str]:
    """Split into segments, and say where reading had to stop (empty: it did not).

    Line breaks after a terminator are tolerated (many partners wrap lines).
    """
    raw = text.strip()
    if not delimiters.segment.isspace() and not raw.endswith(delimiters.segment):
        # The last segment has no terminator: the interchange was cut short (it is still read, to locate it).
        cut = raw.count(delimiters.segment) + 1
        pieces = raw.split(delimiters.segment)
        return _segments(pieces, delimiters), f"{locate(position=cut)}: the last segment has no terminator (cut short?)"
    pieces = raw.split(delimiters.segment)
    if pieces and pieces[-1].strip() == "":
        pieces.pop()
    segments = _segments(pieces, delimiters)
    if len(segments) < len(pieces):
        index = len(segments) + 1
        return (
            segments,
            f"{locate(position=index)}: '{pieces[index - 1].strip()[:10]}' does not start with a segment id",
        )
    return segments, ""


def _segments(pieces: list[str], delimiters: Delimiters) -> list[Segment]:
    """Segments up to the first piece that does not start with a segment id."""
    segments: list[Segment] = []
    for index, piece in enumerate(pieces, start=1):
        parts = piece.strip("\r\n").split(delimiters.element)
        segment_id = parts[0].strip()
        if not re.fullmatch(r"[A-Z][A-Z0-9]{1,2}", segment_id):
            break
        segments.append(Segment(segment_id, tuple(parts[1:]), position=index))
    return segments


def _isa_fields(segment: Segment) -> list[str]:
    return [segment.get(n) for n in range(1, 17)]


def interchange_read(text: str) -> Interchange:
    """Read an interchange; envelope problems are recorded on it, not raised.

    Raises ``X12Error`` only when there is no usable ISA (nothing to answer to).
    """
    delimiters = delimiters_read(text)
    segments, stopped = segments_read(text, delimiters)
    if not segments or segments[0].id != "ISA":
        raise X12Error("an interchange starts with an ISA segment", segment="ISA", position=1)
    isa = segments[0]
    f = _isa_fields(isa)
    interchange = Interchange(
        authorization_qualifier=f[0],
        authorization=f[1].rstrip(),
        security_qualifier=f[2],
        security=f[3].rstrip(),
        sender_qualifier=f[4],
        sender_id=f[5].rstrip(),
        receiver_qualifier=f[6],
        receiver_id=f[7].rstrip(),
        date=f[8],
        time=f[9],
        standards_id=f[10],
        version=f[11],
        control_number=f[12],
        ack_requested=f[13],
        usage=f[14],
        delimiters=delimiters,
    )
    errors = interchange.errors
    if stopped:
        errors.append(stopped)
    for position, qualifier in ((5, f[4]), (7, f[6])):
        if qualifier not in INTERCHANGE_QUALIFIERS:
            errors.append(
                f"{locate(segment='ISA', position=1, element=position)}: unknown interchange ID qualifier '{qualifier}'"
            )
    if not ENVELOPE_VERSIONS.fullmatch(f[11]):
        errors.append(
            f"{locate(segment='ISA', position=1, element=12)}: version '{f[11]}' is not an interchange control"
            " version from 00200 to 00501"
        )
    if not re.fullmatch(r"\d{9}", f[12]):
        errors.append(f"{locate(segment='ISA', position=1, element=13)}: the control number is nine digits")
    index = 1
    group: FunctionalGroup | None = None
    transaction: TransactionSet | None = None
    iea: Segment | None = None
    while index < len(segments):
        segment = segments[index]
        index += 1
        sid = segment.id
        if iea is not None:
            errors.append(f"{locate(segment=sid, position=segment.position)}: data after the IEA segment")
            break
        if sid == "GS":
            if transaction is not None and group is not None:
                transaction.set_codes.append(SET_TRAILER_MISSING)
                transaction = None
            if group is not None:
                group.group_codes.append(GROUP_TRAILER_MISSING)
            group = FunctionalGroup(
                functional_id=segment.get(1),
                sender_code=segment.get(2),
                receiver_code=segment.get(3),
                date=segment.get(4),
                time=segment.get(5),
                control_number=segment.get(6),
                agency=segment.get(7),
                version=segment.get(8),
                position=segment.position,
            )
            interchange.groups.append(group)
        elif sid == "ST":
            if group is None:
                errors.append(f"{locate(segment='ST', position=segment.position)}: a transaction set outside a group")
                continue
            if transaction is not None:
                transaction.set_codes.append(SET_TRAILER_MISSING)
            transaction = TransactionSet(
                id_code=segment.get(1),
                control_number=segment.get(2),
                implementation_reference=segment.get(3),
                position=segment.position,
            )
            if any(t.control_number == transaction.control_number for t in group.transactions):
                transaction.set_codes.append(SET_CONTROL_NOT_UNIQUE)
            group.transactions.append(transaction)
        elif sid == "SE":
            if transaction is None:
                errors.append(f"{locate(segment='SE', position=segment.position)}: SE without ST")
                continue
            counted = len(transaction.body) + 2
            if segment.get(1) != str(counted):
                transaction.set_codes.append(SET_COUNT_MISMATCH)
                transaction.notes.append(
                    SegmentNote(
                        "SE",
                        counted,
                        SEGMENT_ELEMENT_ERRORS,
                        f"SE01 says {segment.get(1) or 'nothing'}; the set has {counted} segments",
                        (ElementNote(1, ELEMENT_INVALID_CODE, segment.get(1)[:99]),),
                        position=segment.position,
                    )
                )
            if segment.get(2) != transaction.control_number:
                transaction.set_codes.append(SET_CONTROL_MISMATCH)
                transaction.notes.append(
                    SegmentNote(
                        "SE",
                        counted,
                        SEGMENT_ELEMENT_ERRORS,
                        f"SE02 '{segment.get(2)}' is not ST02 '{transaction.control_number}'",
                        (ElementNote(2, ELEMENT_INVALID_CODE, segment.get(2)[:99]),),
                        position=segment.position,
                    )
                )
            transaction = None
        elif sid == "GE":
            if group is None:
                errors.append(f"{locate(segment='GE', position=segment.position)}: GE without GS")
                continue
            if transaction is not None:
                transaction.set_codes.append(SET_TRAILER_MISSING)
                transaction = None
            if segment.get(1) != str(len(group.transactions)):
                group.group_codes.append(GROUP_COUNT_MISMATCH)
            if segment.get(2) != group.control_number:
                group.group_codes.append(GROUP_CONTROL_MISMATCH)
            group = None
        elif sid == "IEA":
            iea = segment
            if group is not None:
                group.group_codes.append(GROUP_TRAILER_MISSING)
                errors.append(
                    f"{locate(segment='IEA', position=segment.position)}: group {group.control_number} has no GE"
                )
                group = None
            if segment.get(1) != str(len(interchange.groups)):
                errors.append(
                    f"{locate(segment='IEA', position=segment.position, element=1)}: says {segment.get(1) or 'nothing'}"
                    f" functional groups; the interchange has {len(interchange.groups)}"
                )
            if segment.get(2) != interchange.control_number:
                errors.append(
                    f"{locate(segment='IEA', position=segment.position, element=2)}: control number "
                    f"'{segment.get(2)}' is not ISA13 '{interchange.control_number}'"
                )
        elif transaction is not None:
            transaction.body.append(segment)
        else:
            errors.append(f"{locate(segment=sid, position=segment.position)}: a segment outside a transaction set")
    if iea is None:
        last = segments[-1]
        errors.append(
            f"{locate(segment=last.id, position=last.position)}: the interchange is truncated (no IEA segment)"
        )
        if transaction is not None:
            transaction.set_codes.append(SET_TRAILER_MISSING)
        if group is not None:
            group.group_codes.append(GROUP_TRAILER_MISSING)
    for g in interchange.groups:
        if g.version[:6] not in VERSIONS.values():
            g.group_codes.append(GROUP_VERSION_NOT_SUPPORTED)
    return interchange


# --- Writing ------------------------------------------------------------------------------


def _check_value(value: str, delimiters: Delimiters, where: str) -> None:
    bad = {delimiters.element, delimiters.segment, delimiters.component} & set(value)
    if bad:
        raise X12Error(f"{where}: the value '{value[:30]}' holds a delimiter ({''.join(sorted(bad))})")


def segment_write(segment: Segment, delimiters: Delimiters) -> str:
    for n, value in enumerate(segment.elements, start=1):
        _check_value(value, delimiters, f"{segment.id}{n:02d}")
    return delimiters.element.join((segment.id, *segment.elements)) + delimiters.segment


def _pad(value: str, width: int, what: str) -> str:
    if len(value) > width:
        raise X12Error(f"{what} is at most {width} characters: '{value}'", segment="ISA")
    return value.ljust(width)


def isa_segment(interchange: Interchange) -> Segment:
    d = interchange.delimiters
    repetition_in_isa11 = interchange.version >= REPETITION_FROM
    return Segment(
        "ISA",
        (
            interchange.authorization_qualifier,
            _pad(interchange.authorization, 10, "ISA02"),
            interchange.security_qualifier,
            _pad(interchange.security, 10, "ISA04"),
            interchange.sender_qualifier,
            _pad(interchange.sender_id, 15, "ISA06"),
            interchange.receiver_qualifier,
            _pad(interchange.receiver_id, 15, "ISA08"),
            interchange.date,
            interchange.time,
            d.repetition if repetition_in_isa11 else interchange.standards_id,
            interchange.version,
            interchange.control_number.zfill(9),
            interchange.ack_requested,
            interchange.usage,
            d.component,
        ),
    )


def interchange_write(interchange: Interchange, *, line_breaks: bool = False) -> str:
    """Serialize with counts computed here (SE01, GE01, IEA01), so they cannot disagree."""
    d = interchange.delimiters
    d.check()
    isa = isa_segment(interchange)
    # ISA16 is the component separator itself: checked apart from the other values.
    for n, value in enumerate(isa.elements[:15], start=1):
        _check_value(value, d, f"ISA{n:02d}")
    out = [d.element.join(("ISA", *isa.elements)) + d.segment]
    for group in interchange.groups:
        out.append(
            segment_write(
                Segment.of(
                    "GS",
                    group.functional_id,
                    group.sender_code,
                    group.receiver_code,
                    group.date,
                    group.time,
                    group.control_number,
                    group.agency,
                    group.version,
                ),
                d,
            )
        )
        for tx in group.transactions:
            out.append(segment_write(Segment.of("ST", tx.id_code, tx.control_number, tx.implementation_reference), d))
            out.extend(segment_write(s, d) for s in tx.body)
            out.append(segment_write(Segment.of("SE", len(tx.body) + 2, tx.control_number), d))
        out.append(segment_write(Segment.of("GE", len(group.transactions), group.control_number), d))
    out.append(segment_write(Segment.of("IEA", len(interchange.groups), interchange.control_number.zfill(9)), d))
    return ("\n" if line_breaks else "").join(out) + ("\n" if line_breaks else "")


def body_segments(transaction: TransactionSet) -> Sequence[Segment]:
    return transaction.body


def set_position(transaction: TransactionSet, segment: Segment) -> int:
    """Position of a body segment in its transaction set (ST = 1), for AK302."""
    for n, s in enumerate(transaction.body, start=2):
        if s is segment:
            return n
    return 0


def all_transactions(interchange: Interchange) -> Iterable[tuple[FunctionalGroup, TransactionSet]]:
    for group in interchange.groups:
        for tx in group.transactions:
            yield group, tx
