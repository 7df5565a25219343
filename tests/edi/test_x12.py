"""The X12 core: golden interchanges, round trips, generated envelopes, located refusals.

Golden files (tests/edi/golden/), and where each comes from:

* 990_orderful_accept.x12: the element values of Orderful's published 990 example
  (https://docs.orderful.com/reference/transportation-response-to-a-load-tender-990: B1 ODFS / SH1234 /
  20200831 / A, L11 ODFS11112 BM, SE 4), which the page gives as JSON; written out as X12 here, with an
  ISA/GS envelope of our own around it.
* 204_load_tender.x12, 214_status.x12, 997_ack.x12: written here from published segment layouts
  (Stedi's renderings of Blue Diamond Growers' and MercuryGate's 204, the American Freightways / TSi
  4010 214 guide, a 4010 997 guide), with invented values, in the shape the console itself writes.
* 204_stupidedi_sm204_case1.x12, 214_staedi_issue109.x12, 997_staedi_simple.x12: published interchanges
  copied unchanged from public repositories (kputnam/stupidedi, xlate/staedi); read, and written again,
  in test_golden_published.py. Sources, commits and licences: golden/README.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from missions.edi import transactions as tx
from missions.edi.x12 import (
    GROUP_CONTROL_MISMATCH,
    GROUP_COUNT_MISMATCH,
    SET_CONTROL_MISMATCH,
    SET_COUNT_MISMATCH,
    SET_TRAILER_MISSING,
    Delimiters,
    FunctionalGroup,
    Interchange,
    Segment,
    TransactionSet,
    X12Error,
    interchange_read,
    interchange_write,
)

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_bytes().decode("utf-8")


def only_set(text: str) -> TransactionSet:
    interchange = interchange_read(text)
    assert interchange.errors == []
    assert [g.group_codes for g in interchange.groups] == [[]]
    (transaction,) = interchange.groups[0].transactions
    assert transaction.accepted, transaction.notes
    return transaction


def test_golden_990_from_orderful_example() -> None:
    interchange = interchange_read(golden("990_orderful_accept.x12"))
    assert (interchange.sender_qualifier, interchange.sender_id) == ("ZZ", "ODF_SUPPLIER")
    assert interchange.usage == "T" and interchange.control_number == "000000001"
    response = tx.tender_response_read(only_set(golden("990_orderful_accept.x12")))
    assert response == tx.TenderResponse(scac="ODFS", shipment_id="SH1234", date="20200831", action="A")


def test_golden_204() -> None:
    tender = tx.load_tender_read(only_set(golden("204_load_tender.x12")))
    assert tender.shipment_id == "LOAD4410" and tender.scac == "ABCD" and tender.purpose == "00"
    assert tender.shipment_reference == "PO77812"
    assert tender.respond_by == datetime(2024, 3, 15, 16, 0, tzinfo=UTC)
    pickup, delivery = tender.stops
    assert (pickup.reason, pickup.name, pickup.region, pickup.weight_kg) == ("CL", "ACME PLANT 3", "TN", 18000)
    assert pickup.window_start == datetime(2024, 3, 18, 8, 0, tzinfo=UTC)
    assert pickup.window_end == datetime(2024, 3, 18, 12, 0, tzinfo=UTC)
    assert (delivery.reason, delivery.region) == ("CU", "TX")
    assert delivery.window_end == datetime(2024, 3, 19, 17, 0, tzinfo=UTC)
    assert tender.rate_usd == Decimal("1850.00") and not tender.hazmat


def test_golden_214() -> None:
    status = tx.shipment_status_read(only_set(golden("214_status.x12")))
    assert (status.carrier_reference, status.shipment_id, status.scac) == ("PRO99812", "LOAD4410", "ABCD")
    assert [(r.code, r.reason, r.city, r.region) for r in status.reports] == [
        ("X1", "NS", "DALLAS", "TX"),
        ("D1", "NS", "DALLAS", "TX"),
    ]
    assert status.reports[1].occurred_at == datetime(2024, 3, 19, 17, 10, tzinfo=UTC)


def test_golden_997() -> None:
    ack = tx.ack_read(only_set(golden("997_ack.x12")))
    assert (ack.functional_id, ack.control_number, ack.code) == ("SM", "101", "A")
    assert (ack.included, ack.received, ack.accepted) == (1, 1, 1)
    assert [(s.id_code, s.control_number, s.code) for s in ack.sets] == [("204", "0001", "A")]


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("*.x12")))
def test_golden_round_trip_is_byte_for_byte(name: str) -> None:
    """parse -> write -> parse: the writer recomputes every count and gives back the same text
    (ending its last line as it ends the others: one published file has no final line break)."""
    text = golden(name)
    first = interchange_read(text)
    written = interchange_write(first, line_breaks=True)
    assert written == (text if text.endswith("\n") else text + "\n")
    again = interchange_read(written)
    assert again.groups[0].transactions[0].body == first.groups[0].transactions[0].body


def test_built_transactions_read_back() -> None:
    when = datetime(2025, 6, 1, 14, 30, tzinfo=UTC)
    status = tx.ShipmentStatus("PRO1", "TND-9", "RRFL", (tx.StatusReport("SD", "AO", when, "AMARILLO", "TX"),))
    response = tx.TenderResponse("RRFL", "TND-9", "20250601", "D", reason="NO DRIVER")
    for segments, reader, value in (
        (tx.shipment_status_segments(status), tx.shipment_status_read, status),
        (tx.tender_response_segments(response), tx.tender_response_read, response),
    ):
        transaction = TransactionSet("214", "0001", segments)
        assert reader(transaction) == value


# --- generated envelopes ---------------------------------------------------------------------------

DELIMITER_SETS = [Delimiters("*", ">", "~", "^"), Delimiters("|", ":", "\n", "^"), Delimiters("^", "\\", "'", "{")]
SAFE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -.", min_size=0, max_size=12)
segment_ids = st.sampled_from(["B2", "L11", "N1", "AT7", "MS1", "G62", "K1", "N9", "LX"])
segments = st.builds(
    lambda sid, values: Segment.of(sid, *values), segment_ids, st.lists(SAFE, min_size=0, max_size=6)
).filter(lambda s: all(v == v.strip() or v == "" for v in s.elements))
transactions = st.builds(
    lambda code, n, body: TransactionSet(code, f"{n:04d}", body),
    st.sampled_from(["204", "990", "214", "997"]),
    st.integers(1, 9999),
    st.lists(segments, max_size=8),
)


@st.composite
def interchanges(draw: st.DrawFn) -> Interchange:
    groups = []
    for g in range(draw(st.integers(0, 3))):
        sets = draw(st.lists(transactions, max_size=4, unique_by=lambda t: t.control_number))
        groups.append(FunctionalGroup("SM", "SENDER", "RECEIVER", "20250101", "1200", str(g + 1), transactions=sets))
    return Interchange(
        sender_qualifier=draw(st.sampled_from(["ZZ", "02", "01"])),
        sender_id=draw(st.text(alphabet="ABCDEFXYZ0123456789", min_size=1, max_size=15)),
        receiver_qualifier="ZZ",
        receiver_id="TMSCONSOLE",
        date="250101",
        time="1200",
        control_number=f"{draw(st.integers(1, 999_999_999)):09d}",
        version=draw(st.sampled_from(["00401", "00501"])),
        delimiters=draw(st.sampled_from(DELIMITER_SETS)),
        groups=groups,
    )


@settings(max_examples=60, deadline=None)
@given(interchanges(), st.booleans())
def test_generated_envelopes_round_trip(interchange: Interchange, line_breaks: bool) -> None:
    if line_breaks and interchange.delimiters.segment == "\n":
        line_breaks = False
    text = interchange_write(interchange, line_breaks=line_breaks)
    read = interchange_read(text)
    assert read.errors == []
    assert read.delimiters.element == interchange.delimiters.element
    assert read.delimiters.segment == interchange.delimiters.segment
    assert read.control_number == interchange.control_number
    assert [(g.control_number, g.group_codes) for g in read.groups] == [
        (g.control_number, []) for g in interchange.groups
    ]
    for ours, theirs in zip(interchange.groups, read.groups, strict=True):
        assert [(t.id_code, t.control_number, [(s.id, s.elements) for s in t.body]) for t in theirs.transactions] == [
            (t.id_code, t.control_number, [(s.id, s.elements) for s in t.body]) for t in ours.transactions
        ]
        assert all(t.accepted for t in theirs.transactions)
    assert interchange_write(read, line_breaks=line_breaks) == text


@settings(max_examples=60, deadline=None)
@given(interchanges().filter(lambda i: any(g.transactions for g in i.groups)), st.data())
def test_any_cut_short_interchange_is_refused_with_a_location(interchange: Interchange, data: st.DataObject) -> None:
    text = interchange_write(interchange)
    # A whitespace terminator (newline) cut off the very end leaves nothing to tell: not counted.
    last = len(text) - (2 if interchange.delimiters.segment.isspace() else 1)
    cut = data.draw(st.integers(1, last))
    try:
        read = interchange_read(text[:cut])
    except X12Error as exc:
        assert "segment" in str(exc) or "ISA" in str(exc)
        return
    assert read.errors, "a truncated interchange must not read as complete"
    assert any("position" in e for e in read.errors)


# --- bad envelopes --------------------------------------------------------------------------------


def test_truncated_interchange_is_located() -> None:
    text = golden("990_orderful_accept.x12")
    read = interchange_read(text[: text.index("GE*")])
    assert any("truncated" in e and "segment SE (position 6)" in e for e in read.errors)
    assert GROUP_COUNT_MISMATCH not in read.groups[0].group_codes
    with pytest.raises(X12Error, match="ISA segment is 106 characters"):
        interchange_read(text[:80])


def test_wrong_counts_and_control_numbers_are_located() -> None:
    text = golden("990_orderful_accept.x12")
    se = interchange_read(text.replace("SE*4*0001", "SE*5*0001"))
    (transaction,) = se.groups[0].transactions
    assert transaction.set_codes == [SET_COUNT_MISMATCH] and not transaction.accepted
    assert transaction.notes[0].segment == "SE" and transaction.notes[0].elements[0].position == 1
    se2 = interchange_read(text.replace("SE*4*0001", "SE*4*0002")).groups[0].transactions[0]
    assert SET_CONTROL_MISMATCH in se2.set_codes
    ge = interchange_read(text.replace("GE*1*1", "GE*2*7")).groups[0]
    assert ge.group_codes == [GROUP_COUNT_MISMATCH, GROUP_CONTROL_MISMATCH]
    iea = interchange_read(text.replace("IEA*1*000000001", "IEA*2*000000009"))
    assert any("segment IEA (position 8), element 1" in e for e in iea.errors)
    assert any("segment IEA (position 8), element 2" in e for e in iea.errors)
    missing_se = interchange_read(text.replace("SE*4*0001~\n", ""))
    assert SET_TRAILER_MISSING in missing_se.groups[0].transactions[0].set_codes


def test_unknown_qualifier_is_located() -> None:
    text = golden("990_orderful_accept.x12").replace("*ZZ*ODF_SUPPLIER", "*QQ*ODF_SUPPLIER")
    read = interchange_read(text)
    assert read.errors == ["segment ISA (position 1), element 5: unknown interchange ID qualifier 'QQ'"]


def test_duplicate_set_control_number_in_a_group_is_refused() -> None:
    body = [Segment.of("B1", "ODFS", "SH1", "20200831", "A")]
    group = FunctionalGroup(
        "GF",
        "A",
        "B",
        "20250101",
        "1200",
        "5",
        transactions=[TransactionSet("990", "0007", body), TransactionSet("990", "0007", body)],
    )
    interchange = Interchange("ZZ", "A", "ZZ", "B", "250101", "1200", "000000005", groups=[group])
    read = interchange_read(interchange_write(interchange))
    assert [t.set_codes for t in read.groups[0].transactions] == [[], ["23"]]


def test_element_errors_carry_their_position() -> None:
    text = golden("990_orderful_accept.x12").replace("B1*ODFS*SH1234*20200831*A", "B1*ODFS*SH1234*20200831*Q")
    transaction = interchange_read(text).groups[0].transactions[0]
    with pytest.raises(tx.Refused) as refused:
        tx.tender_response_read(transaction)
    note = refused.value.note
    assert (note.segment, note.set_position, note.position) == ("B1", 2, 4)
    assert (note.elements[0].position, note.elements[0].code, note.elements[0].value) == (4, "7", "Q")


def test_writer_refuses_a_value_holding_a_delimiter() -> None:
    group = FunctionalGroup(
        "GF", "A", "B", "20250101", "1200", "1", transactions=[TransactionSet("990", "0001", [Segment.of("K1", "A*B")])]
    )
    with pytest.raises(X12Error, match="holds a delimiter"):
        interchange_write(Interchange("ZZ", "A", "ZZ", "B", "250101", "1200", "000000001", groups=[group]))


def test_997_reports_every_set_with_ak3_ak4() -> None:
    text = golden("990_orderful_accept.x12").replace("SE*4*0001", "SE*9*0001")
    group = interchange_read(text).groups[0]
    ack = tx.group_ack(group, interchange_errors=False)
    segments = tx.ack_segments(ack)
    rendered = [Segment(s.id, s.elements) for s in segments]
    assert rendered[0] == Segment("AK1", ("GF", "1"))
    assert rendered[1] == Segment("AK2", ("990", "0001"))
    assert rendered[2] == Segment("AK3", ("SE", "4", "", "8"))
    assert rendered[3] == Segment("AK4", ("1", "", "7", "9"))
    assert rendered[-2] == Segment("AK5", ("R", "4"))
    assert rendered[-1] == Segment("AK9", ("R", "1", "1", "0"))


# --- what published interchanges use and the reader once refused --------------------------------------


def test_envelope_versions_before_00401_are_read() -> None:
    """ISA12 versions the envelope itself; 00400 (or 00204) around a GS08 004010 group is valid X12."""
    text = golden("990_orderful_accept.x12")
    for version in ("00400", "00204", "00401", "00501"):
        read = interchange_read(text.replace("*U*00401*", f"*U*{version}*"))
        assert read.errors == [] and read.version == version
    unknown = interchange_read(text.replace("*U*00401*", "*U*00601*"))
    assert unknown.errors == [
        "segment ISA (position 1), element 12: version '00601' is not an interchange control version"
        " from 00200 to 00501"
    ]
    # The group's version is what the console speaks: 004010 or 005010.
    assert interchange_read(text.replace("*X*004010", "*X*003040")).groups[0].group_codes == ["2"]


@pytest.mark.parametrize(
    ("code", "local", "utc"),
    [
        ("UT", "1200", datetime(2025, 7, 1, 12, 0, tzinfo=UTC)),
        ("ET", "1200", datetime(2025, 7, 1, 16, 0, tzinfo=UTC)),  # daylight time in July
        ("ES", "1200", datetime(2025, 7, 1, 17, 0, tzinfo=UTC)),  # standard time whatever the date
        ("CD", "1200", datetime(2025, 7, 1, 17, 0, tzinfo=UTC)),
        ("PT", "1200", datetime(2025, 7, 1, 19, 0, tzinfo=UTC)),
        ("MS", "0030", datetime(2025, 7, 1, 7, 30, tzinfo=UTC)),
    ],
)
def test_time_codes_are_converted_to_utc(code: str, local: str, utc: datetime) -> None:
    status = TransactionSet(
        "214",
        "0001",
        [Segment.of("B10", "P", "TND-1", "RRFL"), Segment.of("AT7", "X1", "NS", "", "", "20250701", local, code)],
    )
    assert tx.shipment_status_read(status).reports[0].occurred_at == utc


def test_eastern_time_follows_the_date() -> None:
    winter = TransactionSet(
        "214",
        "0001",
        [Segment.of("B10", "P", "TND-1"), Segment.of("AT7", "X1", "NS", "", "", "20250115", "1200", "ET")],
    )
    assert tx.shipment_status_read(winter).reports[0].occurred_at == datetime(2025, 1, 15, 17, 0, tzinfo=UTC)


def test_local_time_is_refused_where_it_is() -> None:
    status = TransactionSet(
        "214",
        "0001",
        [Segment.of("B10", "P", "TND-1"), Segment.of("AT7", "X1", "NS", "", "", "20250701", "1200", "LT")],
    )
    with pytest.raises(tx.Refused) as refused:
        tx.shipment_status_read(status)
    note = refused.value.note
    assert (note.segment, note.set_position, note.elements[0].position, note.elements[0].value) == ("AT7", 3, 7, "LT")


def tender_with(*stop: Segment) -> TransactionSet:
    return TransactionSet(
        "204", "0001", [Segment.of("B2", "", "RRFL", "", "TND-1", "", "PP"), Segment.of("B2A", "00"), *stop]
    )


def test_weights_in_pounds_are_read_in_kilograms() -> None:
    at = Segment.of("G62", "69", "20250701", "U", "0800", "UT")
    assert tx.load_tender_read(tender_with(Segment.of("S5", 1, "LD", "40000", "L"), at)).stops[0].weight_kg == 18144
    assert tx.load_tender_read(tender_with(Segment.of("S5", 1, "LD", "18000", "K"), at)).weight_kg == 18000
    with pytest.raises(tx.Refused) as refused:
        tx.load_tender_read(tender_with(Segment.of("S5", 1, "LD", "18", "T"), at))
    assert (refused.value.note.segment, refused.value.note.elements[0].position) == ("S5", 4)


def test_a_stop_with_one_date_or_none() -> None:
    appointment = tx.load_tender_read(
        tender_with(Segment.of("S5", 1, "LD"), Segment.of("G62", "69", "20250701", "U", "0800", "UT"))
    )
    assert (
        appointment.stops[0].window_start == appointment.stops[0].window_end == datetime(2025, 7, 1, 8, 0, tzinfo=UTC)
    )
    latest = tx.load_tender_read(
        tender_with(Segment.of("S5", 1, "CL"), Segment.of("G62", "38", "20250701", "K", "1400", "UT"))
    )
    assert latest.stops[0].window_start == latest.stops[0].window_end == datetime(2025, 7, 1, 14, 0, tzinfo=UTC)
    with pytest.raises(tx.Refused) as refused:
        tx.load_tender_read(tender_with(Segment.of("S5", 1, "CL"), Segment.of("N1", "SH", "A")))
    assert (refused.value.note.segment, refused.value.note.code, refused.value.note.set_position) == ("G62", "3", 4)


def test_997_ak3_ak4_are_read_and_written_back() -> None:
    text = golden("990_orderful_accept.x12").replace("SE*4*0001", "SE*9*0001")
    ack = tx.group_ack(interchange_read(text).groups[0], interchange_errors=False)
    segments = tx.ack_segments(ack)
    read = tx.ack_read(TransactionSet("997", "0001", segments))
    assert [(s.id, s.elements) for s in tx.ack_segments(read)] == [(s.id, s.elements) for s in segments]
    assert read.sets[0].notes[0].elements[0].position == 1
