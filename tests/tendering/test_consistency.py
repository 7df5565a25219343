"""Console and carrier agree on every tender, over HTTP with the real simulator (docs/decisions/0018).

A 404 to a status poll resends the tender once under the same Idempotency-Key, then marks it lost and
moves the waterfall on; 410 and a cancelled / expired status close it; answers that break the contract
back off and give the tender up. None of it polls forever, and only what the carrier answers for
counts against its API error rate.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from missions import services
from missions.choices import CircuitState, TenderStatus
from missions.models import AuditEvent, Carrier, CarrierCircuit, Mission, Shipment, Tender
from missions.models.outbound import OutboundCall
from missions.selectors import shipment_timeline
from missions.simulators.carrier import CarrierSimulator
from missions.tendering import dispatch, polling, tasks
from missions.tendering.carrier_client import CarrierClient, CarrierUnavailable, tender_submit_body
from missions.tendering.carrier_contract import contract_response_pointer
from runbooks.models import Incident
from sla.choices import SLIName
from sla.models import BurnRateAlert
from sla.selectors import sli_compute
from sla.services import sla_evaluate
from tests.factories import ContractFactory, ShipmentFactory
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import DISPATCHER, actions, tender_to

pytestmark = pytest.mark.django_db(transaction=True)

ASYNC: dict[str, Any] = {"answer": "async", "delay_ms": 3_600_000}


def ghost(shipment: Shipment, carrier: Carrier, *, ref: str) -> Tender:
    """A tender the console holds as sent that never reached the carrier (what the old demo seed made)."""
    with transaction.atomic():
        tender = services.tender_create(
            actor=DISPATCHER, shipment_id=shipment.pk, carrier_id=carrier.pk, offered_price_usd=Decimal("1400.00")
        )
        services.tender_mark_sent(tender_id=tender.pk, actor=DISPATCHER, external_ref=ref)
    tender.refresh_from_db()
    return tender


def poll(tender: Tender) -> str:
    result: str = tasks.tender_poll_status.delay(tender.pk).get()
    return result


def submits(sim: CarrierSimulator, tender: Tender) -> list[dict[str, Any]]:
    """The POST /tenders the simulator received carrying this tender's Idempotency-Key."""
    return [r for r in sim.requests if r["path"] == "/tenders" and r["idempotency_key"] == str(tender.idempotency_key)]


def error_rate(carrier: Carrier, since: datetime, until: datetime | None = None) -> Any:
    end = until or timezone.now() + timedelta(seconds=1)
    return sli_compute(carrier.pk, SLIName.API_ERROR_RATE, since, end)


def test_an_unknown_tender_is_resent_once_then_lost_and_never_burns_the_error_rate(
    make_sim: SimFactory, settings: Any
) -> None:
    settings.SLA_BURN_MIN_EVENTS = 10
    sim = make_sim(**ASYNC)
    carrier = push_carrier(sim, name="Auto Amnesiac", breaker_failure_threshold=50)
    ContractFactory(carrier=carrier)
    since = timezone.now() - timedelta(seconds=1)
    # Ten tenders the console holds as sent that the carrier never received ...
    ghosts = [ghost(ShipmentFactory(), carrier, ref=f"GHOST-{n}") for n in range(10)]
    # ... at a carrier that acknowledges a resend and keeps nothing, so they stay unknown.
    sim.faults_set(lose_tenders=True)
    with CarrierClient(carrier) as client:
        assert client.health() == {"status": "ok"}
    before = error_rate(carrier, since)

    outcomes = [[poll(t), poll(t), poll(t)] for t in ghosts]

    assert outcomes == [["resent: sent: answer pending", "lost", "skipped: tender is failed"]] * 10
    for tender in ghosts:
        # Exactly one resend, under the tender's own Idempotency-Key, seen by the carrier.
        assert len(submits(sim, tender)) == 1
        tender.refresh_from_db()
        assert tender.status == TenderStatus.FAILED
        assert tender.status_reason.startswith("lost: Auto Amnesiac does not know tender SIM-")
        assert "404 again after one resend under the same Idempotency-Key" in tender.status_reason
        timeline = [e.action for e in shipment_timeline(shipment=tender.shipment)]
        # The shipment is open again (nothing else is tendered to it), with the reason on its timeline.
        assert timeline[-5:] == [
            "tender.resent",
            "tender.resend_answered",
            "tender.status_changed",
            "shipment.status_changed",
            "tender.lost",
        ]
    assert sim.tender_count() == 0
    # Two status polls per tender, and no third once it is lost: polling stopped.
    assert len([r for r in sim.requests if r["method"] == "GET" and r["path"].startswith("/tenders/")]) == 20
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        assert polling.tenders_due_for_poll() == []
        assert tasks.tenders_poll_sent.delay().get() == 0
    assert len(sim.requests) == 1 + 1 + 30  # token, health, then 2 polls and 1 resend per tender

    # The twenty 404s are recorded, and none of them counts against the carrier.
    assert OutboundCall.objects.filter(carrier=carrier, status_code=404, ok=False).count() == 20
    after = error_rate(carrier, since)
    assert after.value == before.value == Decimal("0")
    assert after.total - after.good == 0
    assert after.inputs["not_counted"] == 20
    evaluation = sla_evaluate(carrier_id=carrier.pk)
    assert evaluation.alerts_fired == []
    assert not BurnRateAlert.objects.exists()
    assert not Incident.objects.filter(kind="sla_breach").exists()
    # The carrier did acknowledge the resends before losing them: that is on-call's business (one incident).
    out_of_sync = Incident.objects.get(kind="tender_out_of_sync", carrier=carrier)
    repeats = AuditEvent.objects.filter(incident_id=out_of_sync.pk, action="incident.repeated")
    assert repeats.count() == 9


def test_a_carrier_that_lost_its_books_takes_the_resend_and_answers_it(
    make_sim: SimFactory, shipment: Shipment
) -> None:
    sim = make_sim(**ASYNC, policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Auto Restarted")
    tender = tender_to(shipment, carrier)
    first_ref = tender.external_ref
    sim.tenders_forget()  # the carrier restarted without its books

    assert poll(tender) == "resent: sent: answer pending"

    tender.refresh_from_db()
    assert tender.status == TenderStatus.SENT and tender.external_ref != first_ref
    assert [r["idempotency_key"] for r in submits(sim, tender)] == [str(tender.idempotency_key)] * 2
    sim.answer_now(tender.external_ref)
    assert poll(tender) == "answered: accept"
    assert Mission.objects.get(tender=tender).carrier_id == carrier.pk
    assert "tender.lost" not in actions(subject_type="tender", subject_id=tender.pk)
    assert not Incident.objects.exists()


def test_a_resend_the_carrier_refuses_marks_the_tender_lost_at_once(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(**ASYNC)
    carrier = push_carrier(sim, name="Auto Stale")
    tender = ghost(shipment, carrier, ref="GHOST-1")
    # The carrier holds this tender's key for another body (say, before a price change), under another ref.
    other = {**tender_submit_body(tender), "offered_price_usd": "1.00"}
    sim.tenders_restore([{"ref": "OTHER-REF", "idempotency_key": str(tender.idempotency_key), "request": other}])

    assert poll(tender) == "lost"

    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    assert "the carrier refused the resend: HTTP 422" in tender.status_reason
    assert actions(subject_type="tender", subject_id=tender.pk)[-4:] == [
        "tender.resent",
        "tender.resend_failed",
        "tender.status_changed",
        "tender.lost",
    ]
    assert "tender.lost" in [e.action for e in shipment_timeline(shipment=shipment)]
    lost = AuditEvent.objects.get(action="tender.lost", subject_id=tender.pk)
    # The carrier never confirmed this tender: the console's loss, not the carrier's; no incident.
    assert lost.data["confirmed_by_carrier"] is False and lost.data["escalate"] is False
    assert not Incident.objects.exists()
    assert len(submits(sim, tender)) == 1
    errors = error_rate(carrier, timezone.now() - timedelta(minutes=1))
    assert (errors.total, errors.good, errors.inputs["not_counted"]) == (1, 1, 2)  # token ok; 404 and 422 left out


def test_a_tender_lost_after_the_carrier_confirmed_it_escalates_and_the_waterfall_moves_on(
    make_sim: SimFactory, shipment: Shipment
) -> None:
    loser_sim = make_sim(**ASYNC)
    loser = push_carrier(loser_sim, name="Auto Loser")
    taker = push_carrier(make_sim(policy={"accept": 1.0}), name="Auto Taker")
    first = dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER, carrier_ids=[loser.pk, taker.pk])
    assert first is not None
    first.refresh_from_db()
    assert first.status == TenderStatus.SENT  # the carrier confirmed it (201)
    loser_sim.tenders_forget()
    loser_sim.faults_set(lose_tenders=True)

    assert [poll(first), poll(first)] == ["resent: sent: answer pending", "lost"]

    first.refresh_from_db()
    assert first.status == TenderStatus.FAILED and first.status_reason.startswith("lost: Auto Loser")
    second = Tender.objects.get(shipment=shipment, carrier=taker)
    assert second.status == TenderStatus.ACCEPTED and second.waterfall_rank == 2
    assert Mission.objects.get(shipment=shipment).carrier_id == taker.pk
    # On-call hears of it through the event registry: runbooks opened the incident.
    incident = Incident.objects.get(kind="tender_out_of_sync")
    assert incident.carrier_id == loser.pk and incident.severity == "error"
    assert f"Tender {first.pk}" in incident.summary and "lost: Auto Loser" in incident.summary
    lost = AuditEvent.objects.get(action="tender.lost", subject_id=first.pk)
    assert lost.shipment_id == shipment.pk and lost.data["confirmed_by_carrier"] is True
    timeline = [e.action for e in shipment_timeline(shipment=shipment)]
    assert timeline.index("tender.lost") < timeline.index("mission.created")


def test_a_410_cancels_the_tender_and_the_waterfall_moves_on(make_sim: SimFactory, shipment: Shipment) -> None:
    assert contract_response_pointer(path="/tenders/{ref}", method="get", status=410) is not None
    quitter_sim = make_sim(**ASYNC)
    quitter = push_carrier(quitter_sim, name="Auto Quitter")
    taker = push_carrier(make_sim(policy={"accept": 1.0}), name="Auto Taker")
    first = dispatch.waterfall_start(shipment_id=shipment.pk, actor=DISPATCHER, carrier_ids=[quitter.pk, taker.pk])
    assert first is not None
    first.refresh_from_db()
    quitter_sim.tender_withdraw(first.external_ref)

    assert poll(first) == "closed by the carrier: cancelled"

    first.refresh_from_db()
    assert first.status == TenderStatus.CANCELLED
    assert first.status_reason == "withdrawn by the carrier (HTTP 410 Gone to a status poll)"
    change = AuditEvent.objects.filter(action="tender.status_changed", subject_id=first.pk).latest("id")
    assert change.actor_label == f"carrier:{quitter.slug}"  # the carrier's doing, not the dispatcher's
    assert Tender.objects.get(shipment=shipment, carrier=taker).status == TenderStatus.ACCEPTED
    assert poll(first) == "skipped: tender is cancelled"
    call = OutboundCall.objects.get(carrier=quitter, operation="tender_status")
    assert call.status_code == 410 and not call.ok
    errors = error_rate(quitter, timezone.now() - timedelta(minutes=1))
    assert errors.inputs["not_counted"] == 1 and errors.total == errors.good  # the 410 is an answer, not an error
    assert not Incident.objects.exists()


@pytest.mark.parametrize(("remote", "expected"), [("cancelled", TenderStatus.CANCELLED), ("expired", "expired")])
def test_a_cancelled_or_expired_status_closes_the_tender(
    make_sim: SimFactory, shipment: Shipment, remote: str, expected: str
) -> None:
    sim = make_sim(**ASYNC)
    carrier = push_carrier(sim, name="Auto Closer")
    tender = tender_to(shipment, carrier)
    with sim.state.lock:
        sim.state.tenders[tender.external_ref].status = remote

    assert poll(tender) == f"closed by the carrier: {expected}"

    tender.refresh_from_db()
    assert tender.status == expected
    assert tender.status_reason.endswith(f"by the carrier (status {remote})")
    shipment.refresh_from_db()
    assert shipment.status == "open"  # nothing left open: ready to tender again
    assert polling.tenders_due_for_poll(older_than_seconds=1) == []


def test_answers_that_break_the_contract_back_off_then_give_the_tender_up(
    make_sim: SimFactory, shipment: Shipment
) -> None:
    sim = make_sim(**ASYNC)
    carrier = push_carrier(sim, name="Auto Garbled", breaker_failure_threshold=10)
    tender = tender_to(shipment, carrier)
    since = timezone.now() - timedelta(seconds=1)
    t0 = timezone.now()
    garbage = [{"not_json": True}, {"malformed": True}, {"not_json": True}, {"malformed": True}]
    # After the n-th unreadable answer the next poll waits 2**n poll periods (30 s each here).
    schedule = [0, 65, 65 + 125, 65 + 125 + 245]
    outcomes = []
    for n, (offset, fault) in enumerate(zip(schedule, garbage, strict=True)):
        with time_machine.travel(t0 + timedelta(seconds=offset)):
            if n:
                wait = polling.poll_backoff_seconds(n)
                with time_machine.travel(t0 + timedelta(seconds=schedule[n - 1] + wait - 5)):
                    assert tender.pk not in polling.tenders_due_for_poll()  # still backing off
                assert polling.tenders_due_for_poll() == [tender.pk]
            sim.faults_clear()
            sim.faults_set(**fault)
            outcomes.append(poll(tender))

    assert outcomes[0] == "unreadable (1/4): contract violation: HTTP 200 with a body that is not JSON"
    assert outcomes[1].startswith("unreadable (2/4): contract violation: response breaks the contract at ")
    assert outcomes[2].startswith("unreadable (3/4)")
    assert outcomes[3] == "given up"
    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    assert tender.status_reason.startswith("given up: 4 status answers from Auto Garbled broke the contract")
    unreadable = AuditEvent.objects.filter(action="tender.status_unreadable", subject_id=tender.pk).order_by("id")
    assert [e.data["next_poll_after_seconds"] for e in unreadable] == [60, 120, 240, None]
    assert all(e.shipment_id == shipment.pk for e in unreadable)
    assert Incident.objects.get(kind="tender_out_of_sync").carrier_id == carrier.pk
    with time_machine.travel(t0 + timedelta(hours=1)):
        assert tasks.tenders_poll_sent.delay().get() == 0
    # Each garbled answer is a contract violation: it counts against the carrier.
    errors = error_rate(carrier, since, t0 + timedelta(hours=1))
    assert errors.total - errors.good == 4 and errors.value is not None and errors.value > 0
    assert CarrierCircuit.objects.get(carrier=carrier).consecutive_failures == 4


def test_calls_refused_by_the_open_breaker_are_never_made_nor_counted(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(**ASYNC)
    carrier = push_carrier(sim, name="Auto Down", breaker_failure_threshold=1)
    tender = tender_to(shipment, carrier)
    sim.faults_set(error_burst=1)
    with pytest.raises(CarrierUnavailable), CarrierClient(carrier) as client:
        client.health()  # the 503 opens the breaker; the retry is refused before it is sent
    assert CarrierCircuit.objects.get(carrier=carrier).state == CircuitState.OPEN
    since = timezone.now() - timedelta(minutes=1)
    calls, requests, before = OutboundCall.objects.count(), len(sim.requests), error_rate(carrier, since)

    assert poll(tender).startswith("failed: circuit open")

    assert (OutboundCall.objects.count(), len(sim.requests)) == (calls, requests)
    after = error_rate(carrier, since)
    assert (after.good, after.total, after.value) == (before.good, before.total, before.value)
    tender.refresh_from_db()
    assert tender.status == TenderStatus.SENT  # nothing is decided on a call that was not made


def test_the_simulator_takes_restored_tenders_over_its_admin_endpoint(make_sim: SimFactory, shipment: Shipment) -> None:
    sim = make_sim(**ASYNC)
    carrier = push_carrier(sim, name="Auto Restored")
    tender = ghost(shipment, carrier, ref="SEEDED-1")
    entry = {"ref": "SEEDED-1", "idempotency_key": str(tender.idempotency_key), "request": tender_submit_body(tender)}

    assert httpx.post(f"{sim.url}/_tenders", json={"tenders": "no"}).status_code == 400
    assert httpx.post(f"{sim.url}/_tenders", json={"tenders": [{**entry, "ref": ""}]}).status_code == 400
    assert httpx.post(f"{sim.url}/_tenders", json={"tenders": ["SEEDED-1"]}).status_code == 400
    refused = httpx.post(f"{sim.url}/_tenders", json={"tenders": [{**entry, "request": {"tender_id": 0}}]})
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
    assert httpx.post(f"{sim.url}/_tenders", json={"tenders": [entry]}).json() == {"restored": 1, "tenders": 1}
    assert httpx.post(f"{sim.url}/_tenders", json={"tenders": [entry]}).json()["restored"] == 0

    assert poll(tender) == "sent: answer pending"
    # A resend of a restored tender is a replay of the same one (same key, same body), not a second tender.
    with CarrierClient(carrier) as client:
        assert client.tender_resend(tender)["ref"] == "SEEDED-1"
    assert sim.tender_count() == 1
