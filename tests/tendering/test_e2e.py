"""End to end against the real carrier simulator over HTTP: tender, answers, waterfall, expiry, cancel."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from missions import services
from missions.choices import MissionStatus, OfferKind, ShipmentStatus, TenderStatus
from missions.models import Mission, Offer, Shipment, Tender
from missions.models.outbound import OutboundCall, TenderWaterfall
from missions.selectors import shipment_timeline
from missions.tendering import dispatch, tasks
from tests.factories import CarrierFactory
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import DISPATCHER, actions, tender_to
from tms_console.logging import correlation_id_var

pytestmark = pytest.mark.django_db(transaction=True)


def test_accept_creates_mission_with_vehicle_route_and_eta(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Auto One")

    tender = tender_to(shipment, carrier)

    assert tender.status == TenderStatus.ACCEPTED
    assert tender.external_ref.startswith("SIM-")
    mission = Mission.objects.get(tender=tender)
    assert mission.vehicle is not None and mission.vehicle.external_id == "SIM-001"
    assert mission.route_id == "SIM-TX-TX"
    assert mission.eta is not None and mission.eta > timezone.now()
    assert mission.price_usd == Decimal("1400.00")
    assert mission.correlation_id == shipment.correlation_id
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.ASSIGNED
    assert sim.tender_count() == 1
    offer = Offer.objects.get(tender=tender)
    assert offer.kind == OfferKind.ACCEPT and offer.source == "api-sync"


def test_outbound_calls_carry_key_and_correlation_id_and_are_recorded(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim()
    carrier = push_carrier(sim, name="Auto One")

    tender = tender_to(shipment, carrier)

    submits = [r for r in sim.requests if r["path"] == "/tenders"]
    assert len(submits) == 1
    assert submits[0]["idempotency_key"] == str(tender.idempotency_key)
    assert submits[0]["correlation_id"] == str(shipment.correlation_id)
    calls = list(OutboundCall.objects.filter(carrier=carrier).order_by("id"))
    assert [c.operation for c in calls] == ["token", "tender_submit"]
    assert all(c.ok for c in calls)
    assert calls[1].status_code == 201 and calls[1].tender_id == tender.pk
    assert calls[1].correlation_id == shipment.correlation_id
    assert calls[1].idempotency_key == str(tender.idempotency_key)
    assert calls[1].latency_ms >= 0


def test_token_is_cached_between_calls(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto One")
    tender = tender_to(shipment, carrier)

    tasks.tender_poll_status.delay(tender.pk)
    tasks.tender_poll_status.delay(tender.pk)

    ops = list(OutboundCall.objects.filter(carrier=carrier).order_by("id").values_list("operation", flat=True))
    assert ops == ["token", "tender_submit", "tender_status", "tender_status"]


def test_rejection_moves_the_waterfall_to_the_next_carrier(make_sim: SimFactory, shipment: Shipment) -> None:
    refuser = push_carrier(make_sim(policy={"reject": 1.0}), name="Auto Refuser")
    taker_sim = make_sim(policy={"accept": 1.0})
    taker = push_carrier(taker_sim, name="Auto Taker")

    first = dispatch.waterfall_start(
        shipment_id=shipment.pk,
        actor=DISPATCHER,
        carrier_ids=[refuser.pk, taker.pk],
        offered_price_usd=Decimal("1300.00"),
    )

    assert first is not None and first.carrier_id == refuser.pk
    first.refresh_from_db()
    assert first.status == TenderStatus.REJECTED and first.waterfall_rank == 1
    second = Tender.objects.get(shipment=shipment, carrier=taker)
    assert second.status == TenderStatus.ACCEPTED and second.waterfall_rank == 2
    assert second.offered_price_usd == Decimal("1300.00")
    assert Mission.objects.get(shipment=shipment).carrier_id == taker.pk
    assert taker_sim.tender_count() == 1
    assert not TenderWaterfall.objects.get(shipment=shipment).is_active
    timeline = [e.action for e in shipment_timeline(shipment=shipment)]
    assert "waterfall.started" in timeline and "offer.reject" in timeline and "mission.created" in timeline


def test_waterfall_uses_the_ranking_and_skips_carriers_that_do_not_fit(make_sim: SimFactory) -> None:
    from tests.factories import ShipmentFactory

    heavy = ShipmentFactory(weight_kg=30000)
    small = push_carrier(make_sim(), name="Auto Small", max_weight_kg=20000)
    big = push_carrier(make_sim(), name="Auto Big", max_weight_kg=36000)

    first = dispatch.waterfall_start(shipment_id=heavy.pk, actor=DISPATCHER)

    assert first is not None and first.carrier_id == big.pk
    assert small.pk not in TenderWaterfall.objects.get(shipment=heavy).carrier_ids


def test_waterfall_returns_none_when_nobody_fits(shipment: Shipment) -> None:
    CarrierFactory(name="Tiny", slug="tiny", max_weight_kg=100)
    assert dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER) is None
    assert "waterfall.exhausted" in actions(shipment=shipment)


def test_counter_offer_then_dispatcher_accepts(make_sim: SimFactory, shipment: Shipment) -> None:
    carrier = push_carrier(make_sim(policy={"counter": 1.0}), name="Auto Haggler")

    tender = tender_to(shipment, carrier, price=Decimal("1000.00"))

    assert tender.status == TenderStatus.COUNTERED
    counter = Offer.objects.get(tender=tender)
    assert counter.kind == OfferKind.COUNTER and counter.price_usd == Decimal("1150.00")
    assert not Mission.objects.filter(shipment=shipment).exists()

    services.counter_offer_decide(tender_id=tender.pk, actor=DISPATCHER, accept=True)

    mission = Mission.objects.get(shipment=shipment)
    assert mission.price_usd == Decimal("1150.00")
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED


def test_expiry_moves_to_the_next_carrier(make_sim: SimFactory, shipment: Shipment) -> None:
    silent = push_carrier(make_sim(answer="async", delay_ms=3_600_000), name="Auto Silent")
    pull = CarrierFactory(name="Pull Carrier", slug="pull-carrier")  # no API: reads tenders via the partner API

    first = dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER, carrier_ids=[silent.pk, pull.pk])
    assert first is not None
    first.refresh_from_db()
    assert first.status == TenderStatus.SENT

    with time_machine.travel(first.expires_at + timedelta(seconds=1)):
        assert tasks.tenders_expire.delay().get() == 1

    first.refresh_from_db()
    assert first.status == TenderStatus.EXPIRED
    second = Tender.objects.get(shipment=shipment, carrier=pull)
    # A pull carrier's tender is marked sent at once; it sees it through the partner API.
    assert second.status == TenderStatus.SENT and second.waterfall_rank == 2


def test_expire_leaves_fresh_tenders_alone(make_sim: SimFactory, shipment: Shipment) -> None:
    carrier = push_carrier(make_sim(answer="async", delay_ms=3_600_000), name="Auto Silent")
    tender = tender_to(shipment, carrier)
    assert dispatch.tenders_expire() == 0
    tender.refresh_from_db()
    assert tender.status == TenderStatus.SENT


def test_cancel_calls_the_carrier(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Slow")
    tender = tender_to(shipment, carrier)
    assert tender.status == TenderStatus.SENT

    dispatch.tender_cancel(tender_id=tender.pk, actor=DISPATCHER, reason="customer withdrew the load")

    tender.refresh_from_db()
    assert tender.status == TenderStatus.CANCELLED
    remote = sim.state.tenders[tender.external_ref]
    assert remote.status == "cancelled"
    cancel_calls = [r for r in sim.requests if r["path"].endswith("/cancel")]
    assert cancel_calls and cancel_calls[0]["idempotency_key"] == str(tender.idempotency_key)
    assert "tender.remote_cancelled" in actions(subject_type="tender", subject_id=tender.pk)
    # The carrier's decided answer is dropped: nothing arrives later.
    assert sim.answer_now(tender.external_ref) is None


def test_shipment_cancel_cancels_remote_tenders(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Slow")
    tender = tender_to(shipment, carrier)

    dispatch.shipment_cancel(shipment_id=shipment.pk, actor=DISPATCHER, reason="order cancelled")

    assert sim.state.tenders[tender.external_ref].status == "cancelled"
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.CANCELLED


def test_async_answer_is_picked_up_by_polling(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Async")
    tender = tender_to(shipment, carrier)
    assert tender.status == TenderStatus.SENT

    assert tasks.tender_poll_status.delay(tender.pk).get() == "sent: answer pending"
    record = sim.answer_now(tender.external_ref)
    assert record is not None and record["channel"] == "poll-only"
    assert tasks.tender_poll_status.delay(tender.pk).get() == "answered: accept"

    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED
    assert Mission.objects.get(tender=tender).carrier_id == carrier.pk
    assert Offer.objects.get(tender=tender).source == "api-poll"


def test_resending_a_sent_tender_sends_nothing(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Async")
    tender = tender_to(shipment, carrier)

    result = tasks.tender_send.delay(tender.pk).get()

    assert result.startswith("skipped")
    assert sim.tender_count() == 1
    assert len([r for r in sim.requests if r["path"] == "/tenders"]) == 1


def test_a_task_body_leaves_no_correlation_id_behind(make_sim: SimFactory, shipment: Shipment) -> None:
    """Run in its caller's thread without Celery's signals, the task still takes the tender's id back off."""
    sim = make_sim(answer="async", delay_ms=3_600_000)
    tender = tender_to(shipment, push_carrier(sim, name="Auto Async"))
    assert correlation_id_var.get() is None

    tasks.tender_poll_status.run(tender.pk)

    assert correlation_id_var.get() is None


def test_duplicate_answer_changes_nothing_and_leaves_an_event(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Auto One")
    tender = tender_to(shipment, carrier)
    remote_state: dict[str, Any] = sim.state.tenders[tender.external_ref].public()

    result = dispatch.tender_apply_remote_state(tender_id=tender.pk, state=remote_state, source="api-poll")

    assert result.startswith("late")
    assert Mission.objects.filter(shipment=shipment).count() == 1
    assert Offer.objects.filter(tender=tender).count() == 1
    assert "offer.ignored" in actions(subject_type="tender", subject_id=tender.pk)


def test_late_answer_after_expiry_changes_nothing(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000, policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Auto Late")
    tender = tender_to(shipment, carrier)
    with time_machine.travel(tender.expires_at + timedelta(seconds=5)):
        dispatch.tenders_expire()
    sim.answer_now(tender.external_ref)

    result = dispatch.tender_apply_remote_state(
        tender_id=tender.pk, state=sim.state.tenders[tender.external_ref].public(), source="api-poll"
    )

    assert result.startswith("late")
    tender.refresh_from_db()
    assert tender.status == TenderStatus.EXPIRED
    assert not Mission.objects.filter(shipment=shipment).exists()
    assert not Offer.objects.filter(tender=tender).exists()
    assert "offer.ignored" in actions(subject_type="tender", subject_id=tender.pk)


def test_vehicle_ping_over_the_alternate_channel(make_sim: SimFactory) -> None:
    from missions.tendering.carrier_client import CarrierClient

    carrier = push_carrier(make_sim(), name="Auto Ping")
    with CarrierClient(carrier) as client:
        ping = client.vehicle_ping("SIM-002")
    assert ping["vehicle_id"] == "SIM-002" and ping["channel"] == "satellite" and ping["safe_hold"] is False


def test_mission_status_after_accept_is_assigned(make_sim: SimFactory, shipment: Shipment) -> None:
    carrier = push_carrier(make_sim(), name="Auto One")
    tender_to(shipment, carrier)
    assert Mission.objects.get(shipment=shipment).status == MissionStatus.ASSIGNED


def test_rejection_through_the_partner_api_advances_on_the_next_sweep(shipment: Shipment) -> None:
    from missions.events import Actor

    first_carrier = CarrierFactory(name="Pull One", slug="pull-one")
    second_carrier = CarrierFactory(name="Pull Two", slug="pull-two")
    first = dispatch.waterfall_start(
        shipment_id=shipment.pk, actor=DISPATCHER, carrier_ids=[first_carrier.pk, second_carrier.pk]
    )
    assert first is not None and first.status == TenderStatus.SENT
    services.offer_record(
        tender_id=first.pk, actor=Actor.for_carrier(first_carrier), kind=OfferKind.REJECT, reason="no trucks"
    )
    assert not Tender.objects.filter(shipment=shipment, carrier=second_carrier).exists()

    assert dispatch.tenders_expire() == 0

    assert Tender.objects.get(shipment=shipment, carrier=second_carrier).status == TenderStatus.SENT


def test_waterfall_refuses_a_shipment_with_an_open_tender(make_sim: SimFactory, shipment: Shipment) -> None:
    from tms_console.domain import Conflict

    carrier = push_carrier(make_sim(answer="async", delay_ms=3_600_000), name="Auto Slow")
    tender_to(shipment, carrier)
    with pytest.raises(Conflict):
        dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER)


def test_submit_body_and_every_simulator_answer_follow_the_contract(make_sim: SimFactory) -> None:
    from missions.tendering.carrier_client import tender_submit_body
    from missions.tendering.carrier_contract import contract_schema_errors
    from tests.factories import ShipmentFactory

    for policy in ({"accept": 1.0}, {"reject": 1.0}, {"counter": 1.0}):
        sim = make_sim(policy=policy)
        carrier = push_carrier(sim, name=f"Auto {next(iter(policy))}")
        tender = tender_to(ShipmentFactory(), carrier)
        assert contract_schema_errors(schema="TenderSubmit", body=tender_submit_body(tender)) == []
        public = sim.state.tenders[tender.external_ref].public()
        assert contract_schema_errors(schema="TenderState", body=public) == []
    assert contract_schema_errors(schema="TenderState", body={"ref": "x", "status": "accepted"}) != []


def test_beat_polls_unanswered_tenders(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(answer="async", delay_ms=3_600_000, policy={"reject": 1.0})
    carrier = push_carrier(sim, name="Auto Quiet")
    tender = tender_to(shipment, carrier)
    sim.answer_now(tender.external_ref)
    assert tasks.tenders_poll_sent.delay().get() == 0  # just sent: not due yet

    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert tasks.tenders_poll_sent.delay().get() == 1

    tender.refresh_from_db()
    assert tender.status == TenderStatus.REJECTED


def test_tender_cancelled_while_sending_is_withdrawn_at_the_carrier(make_sim: SimFactory, shipment: Shipment) -> None:
    from unittest import mock

    from missions.tendering.carrier_client import CarrierClient

    sim = make_sim(answer="async", delay_ms=3_600_000)
    carrier = push_carrier(sim, name="Auto Racy")
    with mock.patch("missions.tendering.dispatch.tender_publish"):  # create it without sending
        tender = tender_to(shipment, carrier)
    real_submit = CarrierClient.tender_submit

    def submit_then_cancel(client: CarrierClient, t: Tender) -> dict[str, Any]:
        answer = real_submit(client, t)
        services.tender_transition(
            tender_id=t.pk, to_status=TenderStatus.CANCELLED, actor=DISPATCHER, reason="dispatcher cancelled meanwhile"
        )
        return answer

    with mock.patch.object(CarrierClient, "tender_submit", submit_then_cancel):
        assert tasks.tender_send.delay(tender.pk).get().startswith("late")

    tender.refresh_from_db()
    assert tender.status == TenderStatus.CANCELLED
    assert not Mission.objects.filter(shipment=shipment).exists()
    assert sim.state.tenders[tender.external_ref].status == "cancelled"
    assert "offer.ignored" in actions(subject_type="tender", subject_id=tender.pk)
    assert "tender.remote_cancelled" in actions(subject_type="tender", subject_id=tender.pk)


def test_declined_counter_moves_the_waterfall_on(make_sim: SimFactory, shipment: Shipment) -> None:
    haggler = push_carrier(make_sim(policy={"counter": 1.0}), name="Auto Haggler")
    taker = push_carrier(make_sim(policy={"accept": 1.0}), name="Auto Taker")
    first = dispatch.waterfall_start(
        shipment_id=shipment.pk,
        actor=DISPATCHER,
        carrier_ids=[haggler.pk, taker.pk],
        offered_price_usd=Decimal("900.00"),
    )
    assert first is not None
    first.refresh_from_db()
    assert first.status == TenderStatus.COUNTERED
    assert not Tender.objects.filter(carrier=taker).exists()  # waiting on the dispatcher, not moving on

    dispatch.counter_decide(tender_id=first.pk, actor=DISPATCHER, accept=False, reason="too expensive")

    first.refresh_from_db()
    assert first.status == TenderStatus.REJECTED
    assert Tender.objects.get(shipment=shipment, carrier=taker).status == TenderStatus.ACCEPTED
