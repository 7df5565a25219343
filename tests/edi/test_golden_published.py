"""Golden files taken as published: the reader on other people's interchanges, byte for byte.

Each fixture in tests/edi/golden/ named after its source is a copy of a file published in a public
repository, unchanged (its own delimiters, line ends and envelope); tests/edi/golden/README.md names
each source, commit and licence:

* 204_stupidedi_sm204_case1.x12 - kputnam/stupidedi (BSD-3-Clause), spec/fixtures/004010/SM204/case/1.edi,
  added in commit e356422df1f9373a86047d2251459165a3e1dfcb: a 004010 load tender with `|` as component
  separator, ISA05 qualifier 14, LD/UL stops with one scheduled G62 each (69/70), weights in pounds,
  times in ET/CD/ED, and the segments of a production tender (NTE, N7, PLD, OID, L5, AT8, G61).
* 214_staedi_issue109.x12 - xlate/staedi (Apache-2.0), src/test/resources/x12/issue109/ts214_ellipses_segterm.edi,
  added in commit 21b74b834600d669e76626fe3171d0b169c5f97a: a 214 whose segment terminator is "…"
  (U+2026, UTF-8), ISA12 00400 around a 004010 group, AT7s in ET, MS2 instead of MS1.
* 997_staedi_simple.x12 - xlate/staedi (Apache-2.0), src/test/resources/x12/simple997.edi, as of commit
  38c46c42bdce7a1053937e0ff2e4841a73dc7fae: a 005010 997 rejecting a set with AK3/AK4 details
  (`^` repetition separator, `:` component separator).

Where the console writes the same transaction, the decoded values are written again and compared
segment by segment with the published set; every difference is listed below with its reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from missions.edi import transactions as tx
from missions.edi.x12 import Segment, TransactionSet, interchange_read, interchange_write

GOLDEN = Path(__file__).parent / "golden"
# The segment element that tells repeated segments apart (L11 by qualifier, G62 by date qualifier...).
KEYS = {"L11": 2, "G62": 1, "N1": 1, "S5": 1, "N9": 1, "AK2": 2}


def published(name: str) -> str:
    return (GOLDEN / name).read_bytes().decode("utf-8")


def only_set(text: str) -> TransactionSet:
    interchange = interchange_read(text)
    assert interchange.errors == []
    (group,) = interchange.groups
    assert group.group_codes == []
    (transaction,) = group.transactions
    assert transaction.accepted, transaction.notes
    return transaction


def compare(written: list[Segment], body: list[Segment]) -> dict[str, list[object]]:
    """Pair each written segment with the first unpaired published one of the same id (and key element).

    Returns the element differences of paired segments (segment, element, published, written), the
    written segments with no published counterpart, and the published ones the writer does not produce.
    """
    free = list(body)
    changed: list[object] = []
    only_written: list[object] = []
    for ours in written:
        key = KEYS.get(ours.id)
        theirs = next(
            (s for s in free if s.id == ours.id and (key is None or s.get(key) == ours.get(key))),
            None,
        )
        if theirs is None:
            only_written.append(f"{ours.id}*{'*'.join(ours.elements)}")
            continue
        free.remove(theirs)
        for n in range(1, max(len(ours.elements), len(theirs.elements)) + 1):
            if ours.get(n) != theirs.get(n):
                changed.append((ours.id, n, theirs.get(n), ours.get(n)))
    return {"changed": changed, "only_written": only_written, "not_written": [s.id for s in free]}


def test_envelopes_are_written_back_byte_for_byte() -> None:
    """The envelope writer reproduces each published interchange; the only difference is that the
    writer ends its last line as it ends every other one (the staedi 214 has no final line break)."""
    for name in ("204_stupidedi_sm204_case1.x12", "214_staedi_issue109.x12", "997_staedi_simple.x12"):
        text = published(name)
        written = interchange_write(interchange_read(text), line_breaks=True)
        assert written == text if text.endswith("\n") else written == text + "\n", name


# --- 204 (stupidedi) ---------------------------------------------------------------------------------


def test_published_204_reads_into_a_load_tender() -> None:
    interchange = interchange_read(published("204_stupidedi_sm204_case1.x12"))
    assert interchange.delimiters.component == "|"
    assert (interchange.sender_qualifier, interchange.sender_id) == ("14", "SENDER000111111")
    assert (interchange.receiver_qualifier, interchange.receiver_id, interchange.usage) == (
        "02",
        "RECEIVER0002222",
        "T",
    )
    tender = tx.load_tender_read(only_set(published("204_stupidedi_sm204_case1.x12")))
    assert (tender.shipment_id, tender.scac, tender.payment, tender.purpose) == ("12345678", "", "PP", "00")
    assert tender.shipment_reference == "666555"  # the first L11*SI of the heading (there are two)
    assert tender.respond_by == datetime(2022, 8, 22, 15, 20, tzinfo=UTC)  # G62*64 ... 1120 ET (EDT, UTC-4)
    pickup, delivery = tender.stops
    assert (pickup.sequence, pickup.reason, pickup.party, pickup.name, pickup.region) == (
        1,
        "LD",
        "SF",
        "FAKE_BIZ",
        "AL",
    )
    # G62*69 (scheduled pick-up) 20220823 1630 CD: one instant, UTC-5.
    assert pickup.window_start == pickup.window_end == datetime(2022, 8, 23, 21, 30, tzinfo=UTC)
    assert (delivery.sequence, delivery.reason, delivery.party, delivery.region) == (2, "UL", "ST", "FL")
    assert delivery.name == "PUBLIX SUPER MARKETS - CHART"
    # G62*70 (scheduled delivery) 20220824 0700 ED: UTC-4.
    assert delivery.window_start == delivery.window_end == datetime(2022, 8, 24, 11, 0, tzinfo=UTC)
    # S503/S504 21230.12 L: pounds, 9,629.7 kg.
    assert pickup.weight_kg == delivery.weight_kg == tender.weight_kg == 9630
    assert tender.rate_usd == Decimal("2152.67")  # L305 215267 (N2: two implied decimals)
    assert not tender.hazmat and tender.correlation_id == ""


def test_published_204_written_again() -> None:
    transaction = only_set(published("204_stupidedi_sm204_case1.x12"))
    written = tx.load_tender_segments(tx.load_tender_read(transaction))
    diff = compare(written, transaction.body)
    assert diff["changed"] == [
        # B205 weight unit, B207 shipment qualifier: not modelled.
        ("B2", 5, "L", ""),
        ("B2", 7, "L", ""),
        ("B2A", 2, "LT", ""),  # B2A02 application type (LT load tender): not modelled
        # The console writes UTC: 1120 ET (EDT) is 1520 UT.
        ("G62", 4, "1120", "1520"),
        ("G62", 5, "ET", "UT"),
        *stop_differences("8888.88", "A9", "ATTALLA", "12345"),
        *stop_differences("12341.24", "28276820017", "ORLANDO", "32809"),
        # L3: L301/L302 (weight) and L308-L315 not modelled; L305, the charge, is the same.
        ("L3", 1, "21230.12", ""),
        ("L3", 2, "G", ""),
        ("L3", 9, "0", ""),
        ("L3", 10, "E", ""),
        ("L3", 11, "0", ""),
        ("L3", 12, "L", ""),
        ("L3", 14, "00", ""),
        ("L3", 15, "PL", ""),
    ]
    assert diff["only_written"] == [
        "L11*CID*ZZ",  # the console's correlation id (empty: this tender did not come from the console)
        "MS3**B**M",  # the console always writes MS3 with the SCAC (empty in this tender's B202)
        # A window has two ends (ship not before / no later than); the tender had one appointment (69/70).
        "G62*37*20220823*I*2130*UT",
        "G62*38*20220823*K*2130*UT",
        "G62*53*20220824*G*1100*UT",
        "G62*54*20220824*L*1100*UT",
    ]
    # Published segments the console does not model: references, notes, equipment, the appointments
    # (written as windows above), order details (OID, L5 and their AT8 and G61).
    assert diff["not_written"] == (
        ["L11"] * 5
        + ["NTE", "NTE", "N7", "G62", "PLD", "NTE", "NTE", "N3", "G61", "OID", "L5", "G61"]
        + ["L11"] * 3
        + ["OID", "L5", "G61"]
        + ["L11"] * 3
        + ["G62", "PLD", "NTE", "NTE", "N3", "G61", "OID", "L5", "AT8", "G61"]
        + ["L11"] * 3
        + ["OID", "L5", "AT8", "G61"]
        + ["L11"] * 3
    )


def stop_differences(
    order_weight: str, party_code: str, city: str, postal_code: str
) -> list[tuple[str, int, str, str]]:
    """What differs in each stop of the published 204 once written by the console."""
    return [
        # Weights are kept in whole kilograms: 21230.12 pounds are written 9630 K; S505-S508 not modelled.
        ("S5", 3, "21230.12", "9630"),
        ("S5", 4, "L", "K"),
        ("S5", 5, "0", ""),
        ("S5", 6, "PC", ""),
        ("S5", 7, "0", ""),
        ("S5", 8, "E", ""),
        # The console's AT8 is the stop's weight; it pairs with the stop's first published AT8, which is
        # one order's (the loop of an OID), in pounds.
        ("AT8", 2, "L", "K"),
        ("AT8", 3, order_weight, "9630"),
        ("AT8", 6, "E", ""),
        ("AT8", 7, "0", ""),
        # N103/N104 the party's code: not modelled.
        ("N1", 3, "93", ""),
        ("N1", 4, party_code, ""),
        # N401 city and N403 postal code: the console keeps the region only; N404 written as a
        # two-letter country code (the published USA is three).
        ("N4", 1, city, ""),
        ("N4", 3, postal_code, ""),
        ("N4", 4, "USA", "US"),
    ]


# --- 214 (staedi) ------------------------------------------------------------------------------------


def test_published_214_reads_with_its_own_terminator() -> None:
    text = published("214_staedi_issue109.x12")
    interchange = interchange_read(text)
    assert (interchange.delimiters.segment, interchange.delimiters.element) == ("\u2026", "*")
    assert interchange.version == "00400" and interchange.groups[0].version == "004010"
    status = tx.shipment_status_read(only_set(text))
    assert (status.carrier_reference, status.shipment_id, status.scac) == ("0542550913", "7727019", "XXXX")
    # AT7*AG (estimated delivery) 20200911 1159 ET and AT7*AF (departed pick-up) 20200910 1135 ET: EDT, UTC-4.
    assert [(r.code, r.reason, r.occurred_at) for r in status.reports] == [
        ("AG", "NS", datetime(2020, 9, 11, 15, 59, tzinfo=UTC)),
        ("AF", "NS", datetime(2020, 9, 10, 15, 35, tzinfo=UTC)),
    ]
    assert all((r.city, r.region) == ("", "") for r in status.reports)  # MS2 (equipment), no MS1 (location)


def test_published_214_written_again() -> None:
    transaction = only_set(published("214_staedi_issue109.x12"))
    diff = compare(tx.shipment_status_segments(tx.shipment_status_read(transaction)), transaction.body)
    # The console writes UTC.
    assert diff["changed"] == [
        ("AT7", 6, "1159", "1559"),
        ("AT7", 7, "ET", "UT"),
        ("AT7", 6, "1135", "1535"),
        ("AT7", 7, "ET", "UT"),
    ]
    assert diff["only_written"] == []
    # References, parties and equipment are not part of the console's 214.
    assert diff["not_written"] == ["L11", "N1", "N3", "N4", "N1", "N3", "N4", "N1", "N3", "N4", "MS2", "MS2", "AT8"]


# --- 997 (staedi) ------------------------------------------------------------------------------------


def test_published_997_reads_with_ak3_ak4() -> None:
    text = published("997_staedi_simple.x12")
    interchange = interchange_read(text)
    assert (interchange.version, interchange.delimiters.repetition, interchange.delimiters.component) == (
        "00501",
        "^",
        ":",
    )
    assert interchange.groups[0].version == "005010X230"
    ack = tx.ack_read(only_set(text))
    assert (ack.functional_id, ack.control_number, ack.code) == ("HC", "000001", "R")
    assert (ack.included, ack.received, ack.accepted, ack.group_codes) == (1, 1, 0, ())
    (rejected,) = ack.sets
    assert (rejected.id_code, rejected.control_number, rejected.code, rejected.set_codes) == (
        "837",
        "0021",
        "R",
        ("5",),
    )
    (note,) = rejected.notes
    assert (note.segment, note.set_position, note.loop, note.code) == ("NM1", 8, "", "8")
    (element,) = note.elements
    assert (element.position, element.reference, element.code, element.value) == (8, "66", "7", "MI")


def test_published_997_written_again_is_the_same() -> None:
    transaction = only_set(published("997_staedi_simple.x12"))
    written = tx.ack_segments(tx.ack_read(transaction))
    assert [(s.id, s.elements) for s in written] == [(s.id, s.elements) for s in transaction.body]
