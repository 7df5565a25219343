"""EDI through the console's services: 204 out, 990/214 in through the offer and mission services, 997s."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from missions.choices import ExceptionKind, MissionStatus, OfferKind, ShipmentStatus, TenderStatus
from missions.edi import services
from missions.edi import transactions as tx
from missions.edi.x12 import FunctionalGroup, Interchange, TransactionSet, interchange_read, interchange_write
from missions.events import Actor
from missions.models import AuditEvent, Carrier, Mission, Offer, Tender
from missions.models.edi import EdiAckStatus, EdiControlCounter, EdiDirection, EdiInterchange, EdiStatus
from missions.simulators.edi_carrier import EdiCarrierSimulator
from missions.tendering import dispatch
from tests.factories import ShipmentFactory

pytestmark = pytest.mark.django_db
DISPATCHER = Actor.system("test-dispatcher")


def tender_over_edi(carrier: Carrier, django_capture_on_commit_callbacks: Any) -> Tender:
    shipment = ShipmentFactory(hazmat=False)
    with django_capture_on_commit_callbacks(execute=True):
        tender = dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER, carrier_ids=[carrier.pk])
    assert tender is not None
    tender.refresh_from_db()
    return tender


def carrier_interchange(
    sets: list[tuple[str, list[Any]]],
    functional_id: str,
    control: int,
    *,
    sender: str = "REDRIVER",
    qualifier: str = "ZZ",
) -> str:
    group = FunctionalGroup(
        functional_id,
        sender,
        "TMSCONSOLE",
        "20250101",
        "1200",
        str(control),
        transactions=[TransactionSet(c, f"{n:04d}", b) for n, (c, b) in enumerate(sets, 1)],
    )
    return interchange_write(
        Interchange(qualifier, sender, "ZZ", "TMSCONSOLE", "250101", "1200", f"{control:09d}", groups=[group]),
        line_breaks=True,
    )


def answer_990(tender: Tender, action: str, control: int, *, reference: str | None = None) -> str:
    response = tx.TenderResponse("RRFL", reference or f"TND-{tender.pk}", "20250101", action, "RR-1", "NO DRIVER")
    return carrier_interchange([("990", tx.tender_response_segments(response))], "GF", control)


def ack_codes(text: str) -> list[str]:
    """AK5 and AK9 codes of a 997 the console wrote."""
    interchange = interchange_read(text)
    return [
        f"{s.id}:{s.get(1)}"
        for g in interchange.groups
        for t in g.transactions
        for s in t.body
        if s.id in ("AK5", "AK9")
    ]


def test_tender_to_edi_carrier_goes_out_as_a_204(
    edi_carrier: Carrier, edi_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    assert tender.status == TenderStatus.SENT and tender.external_ref == f"TND-{tender.pk}"
    (path,) = (edi_dir / "red-river" / "outbound").iterdir()
    interchange = interchange_read(path.read_text())
    assert interchange.errors == [] and (interchange.receiver_qualifier, interchange.receiver_id) == ("ZZ", "REDRIVER")
    load = tx.load_tender_read(interchange.groups[0].transactions[0])
    assert load.shipment_id == f"TND-{tender.pk}" and load.shipment_reference == tender.shipment.reference
    assert load.correlation_id == str(tender.correlation_id)
    assert [s.reason for s in load.stops] == ["CL", "CU"] and load.weight_kg == tender.shipment.weight_kg
    record = EdiInterchange.objects.get(direction=EdiDirection.OUTBOUND, transaction_types="204")
    assert record.status == EdiStatus.SENT and record.ack_status == EdiAckStatus.PENDING and record.tender == tender
    assert AuditEvent.objects.filter(action="edi.interchange_sent", subject_id=record.pk).exists()


def test_990_accept_books_through_the_offer_service_once(
    edi_carrier: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    text = answer_990(tender, "A", 501)
    with django_capture_on_commit_callbacks(execute=True):
        receipt = services.interchange_receive(text=text, source="test", carrier=edi_carrier)
    assert receipt.record.status == EdiStatus.ACCEPTED
    assert ack_codes(receipt.ack_text) == ["AK5:A", "AK9:A"]
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED
    offer = Offer.objects.get(tender=tender)
    assert (
        offer.kind == OfferKind.ACCEPT and offer.source == "edi" and offer.metadata["edi"]["interchange"] == "000000501"
    )
    mission = Mission.objects.get(tender=tender)
    assert AuditEvent.objects.filter(action="offer.accept", carrier=edi_carrier).count() == 1
    assert receipt.record.mission == mission and receipt.record.ack_status == EdiAckStatus.ACCEPTED
    # The same interchange again (same ISA13, same bytes): the first 997, nothing applied twice.
    again = services.interchange_receive(text=text, source="test", carrier=edi_carrier)
    assert again.duplicate and again.ack_text == receipt.ack_text and again.record.status == EdiStatus.DUPLICATE
    assert Offer.objects.filter(tender=tender).count() == 1 and Mission.objects.filter(tender=tender).count() == 1
    # The same answer in a new interchange: the tender is closed, refused with a located error.
    late = services.interchange_receive(text=answer_990(tender, "A", 502), source="test", carrier=edi_carrier)
    assert late.record.status == EdiStatus.REJECTED and ack_codes(late.ack_text) == ["AK5:R", "AK9:R"]
    assert any("segment B1 (position 4), element 2" in e and "no longer takes answers" in e for e in late.record.errors)
    assert Offer.objects.filter(tender=tender).count() == 1


def test_990_decline_moves_the_waterfall_on(edi_carrier: Carrier, django_capture_on_commit_callbacks: Any) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    receipt = services.interchange_receive(text=answer_990(tender, "D", 503), source="test", carrier=edi_carrier)
    assert receipt.record.status == EdiStatus.ACCEPTED
    tender.refresh_from_db()
    assert tender.status == TenderStatus.REJECTED and tender.status_reason == "NO DRIVER"
    assert tender.shipment.waterfalls.get().is_active is False  # exhausted: it was the only carrier


def test_990_for_a_tender_that_does_not_exist_is_refused(edi_carrier: Carrier) -> None:
    response = tx.TenderResponse("RRFL", "TND-999999", "20250101", "A")
    text = carrier_interchange([("990", tx.tender_response_segments(response))], "GF", 504)
    receipt = services.interchange_receive(text=text, source="test", carrier=edi_carrier)
    assert receipt.record.status == EdiStatus.REJECTED
    assert receipt.record.errors[0].startswith("segment B1 (position 4), element 2: no tender 'TND-999999'")
    assert ack_codes(receipt.ack_text) == ["AK5:R", "AK9:R"]
    assert "AK4*2**7*TND-999999~" in receipt.ack_text
    assert not Offer.objects.exists()


@pytest.mark.parametrize(
    ("damage", "located"),
    [
        (lambda t: t[: t.index("GE*")], "the interchange is truncated"),
        (lambda t: t.replace("SE*5*0001", "SE*7*0001"), "SE01 says 7"),
        (lambda t: t.replace("GE*1*505", "GE*3*505"), "AK905 5"),
        (lambda t: t.replace("IEA*1*000000505", "IEA*2*000000505"), "segment IEA (position 9), element 1"),
        (lambda t: t.replace("*ZZ*REDRIVER", "*QQ*REDRIVER", 1), "element 5: unknown interchange ID qualifier 'QQ'"),
    ],
)
def test_bad_interchanges_are_refused_with_a_located_error_and_nothing_applied(
    edi_carrier: Carrier, django_capture_on_commit_callbacks: Any, damage: Any, located: str
) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    text = damage(answer_990(tender, "A", 505))
    receipt = services.interchange_receive(text=text, source="test", carrier=edi_carrier)
    assert receipt.record.status == EdiStatus.REJECTED
    assert any(located in e for e in receipt.record.errors), receipt.record.errors
    tender.refresh_from_db()
    assert tender.status == TenderStatus.SENT and not Offer.objects.exists()
    if "QQ" not in text:  # an unknown sender qualifier: no partner, so no 997 can be addressed
        assert ack_codes(receipt.ack_text)[-1] == "AK9:R"


def test_reused_control_number_with_other_content_is_refused(
    edi_carrier: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    first = services.interchange_receive(text=answer_990(tender, "D", 506), source="test", carrier=edi_carrier)
    assert first.record.status == EdiStatus.ACCEPTED
    other = services.interchange_receive(text=answer_990(tender, "A", 506), source="test", carrier=edi_carrier)
    assert other.record.status == EdiStatus.REJECTED and other.record.duplicate_of == first.record
    assert any("element 13: control number 000000506 was already used" in e for e in other.record.errors)
    tender.refresh_from_db()
    assert tender.status == TenderStatus.REJECTED


def test_214_sequence_moves_the_mission_and_reports_delays(
    edi_carrier: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    services.interchange_receive(text=answer_990(tender, "A", 510), source="test", carrier=edi_carrier)
    mission = Mission.objects.get(tender=tender)
    from datetime import UTC, datetime

    when = datetime(2025, 1, 1, 12, tzinfo=UTC)

    def status(codes: list[tuple[str, str]], control: int) -> EdiInterchange:
        reports = tuple(tx.StatusReport(code, reason, when, "WACO", "TX") for code, reason in codes)
        body = tx.shipment_status_segments(tx.ShipmentStatus("RR-1", f"TND-{tender.pk}", "RRFL", reports))
        text = carrier_interchange([("214", body)], "QM", control)
        return services.interchange_receive(text=text, source="test", carrier=edi_carrier).record

    assert status([("X3", "NS"), ("AF", "NS")], 511).status == EdiStatus.ACCEPTED
    mission.refresh_from_db()
    assert mission.status == MissionStatus.EN_ROUTE
    assert AuditEvent.objects.filter(action="edi.status_reported", mission=mission).count() == 1  # X3
    assert status([("SD", "AI")], 512).status == EdiStatus.ACCEPTED
    delay = mission.exceptions.get()
    assert delay.kind == ExceptionKind.DELAYED and delay.detail == "Shipment delayed: Mechanical breakdown"
    assert status([("D1", "NS")], 513).status == EdiStatus.ACCEPTED
    mission.refresh_from_db()
    assert mission.status == MissionStatus.COMPLETED and mission.shipment.status == ShipmentStatus.DELIVERED
    moves = AuditEvent.objects.filter(action="mission.status_changed", mission=mission).values_list("after", flat=True)
    assert [m["status"] for m in moves] == ["en_route", "arriving", "completed"]
    # A status for a finished mission is refused, located, and changes nothing.
    late = status([("X6", "NS")], 514)
    assert late.status == EdiStatus.REJECTED
    assert (
        late.errors[0].startswith("segment AT7 (position 6), element 1: mission") and "is completed" in late.errors[0]
    )


def test_a_214_for_a_tender_without_mission_is_refused_and_the_set_applies_nothing(
    edi_carrier: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    from datetime import UTC, datetime

    report = tx.StatusReport("AF", "NS", datetime(2025, 1, 1, tzinfo=UTC))
    body = tx.shipment_status_segments(tx.ShipmentStatus("RR-1", f"TND-{tender.pk}", "RRFL", (report,)))
    record = services.interchange_receive(text=carrier_interchange([("214", body)], "QM", 520), source="t").record
    assert record.status == EdiStatus.REJECTED and "has no mission (it is sent)" in record.errors[0]


def test_unknown_sender_and_foreign_carrier_are_refused(edi_carrier: Carrier, carrier_a: Carrier) -> None:
    body = tx.tender_response_segments(tx.TenderResponse("XXXX", "TND-1", "20250101", "A"))
    stranger = services.interchange_receive(
        text=carrier_interchange([("990", body)], "GF", 530, sender="NOBODY"), source="t"
    )
    assert stranger.record.status == EdiStatus.REJECTED and stranger.ack_text == ""
    assert "is not a configured trading partner" in stranger.record.errors[0]
    impostor = services.interchange_receive(
        text=carrier_interchange([("990", body)], "GF", 531), source="t", carrier=carrier_a
    )
    assert any("not the authenticated carrier" in e for e in impostor.record.errors)


def test_carrier_997_acknowledges_our_204(
    edi_carrier: Carrier, edi_sim: EdiCarrierSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    edi_sim.decline = True
    assert edi_sim.tick() == 2  # a 997 and a 990 decline
    assert services.folder_poll() == 2
    sent = EdiInterchange.objects.get(direction=EdiDirection.OUTBOUND, transaction_types="204")
    assert sent.ack_status == EdiAckStatus.ACCEPTED and sent.ack is not None and sent.ack.acknowledges == sent
    assert AuditEvent.objects.filter(action="edi.acknowledged", subject_id=sent.pk).exists()
    # Our 997 for the carrier's 990 is in the folder, and no 997 answers the carrier's 997.
    ours = EdiInterchange.objects.filter(direction=EdiDirection.OUTBOUND, transaction_types="997")
    assert ours.count() == 1 and ours.get().acknowledges.transaction_types == "990"


def test_resend_sends_the_same_bytes_and_is_audited(
    edi_carrier: Carrier, edi_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    record = EdiInterchange.objects.get(transaction_types="204")
    folder = edi_dir / "red-river" / "outbound"
    first = next(folder.iterdir()).read_text()
    next(folder.iterdir()).unlink()
    services.interchange_resend(interchange_id=record.pk, actor=DISPATCHER)
    assert next(folder.iterdir()).read_text() == first
    record.refresh_from_db()
    assert record.send_count == 2
    assert AuditEvent.objects.filter(action="edi.interchange_resent", subject_id=record.pk).count() == 1


def test_control_numbers_are_distinct_under_concurrency(edi_carrier: Carrier) -> None:
    partner_id = edi_carrier.edi.pk
    taken = [n for _ in range(20) for n in services.control_numbers_allocate(partner_id=partner_id, level="isa")]
    assert taken == list(range(1, 21))
    EdiControlCounter.objects.filter(partner_id=partner_id, level="isa").update(value=999_999_998)
    assert services.control_numbers_allocate(partner_id=partner_id, level="isa", count=3) == [999_999_999, 1, 2]


@pytest.mark.django_db(transaction=True)
def test_control_numbers_from_threads_never_repeat(edi_carrier: Carrier) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; the in-memory SQLite test database is one connection's")
    partner_id = edi_carrier.edi.pk
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        try:
            for _ in range(10):
                numbers = services.control_numbers_allocate(partner_id=partner_id, level="gs")
                with lock:
                    got.extend(numbers)
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 41))
