"""End to end: lost comms fails over to the EDI fallback carrier, which books and runs the leg over X12.

The runbook is driven as in tests/runbooks/test_runbooks.py (the recovery timeout passed with
time-machine); the simulated carrier (missions.simulators.edi_carrier) reads the 204 from its
folder and answers with a 997, a 990 accept and a 214 per step of the trip; the console reads
its inbound folder as the beat task does.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from missions.choices import MissionStatus, ShipmentStatus, TenderStatus
from missions.edi import services
from missions.models import Carrier, Mission, Tender
from missions.models.edi import EdiAckStatus, EdiDirection, EdiInterchange, EdiStatus
from missions.simulators.edi_carrier import TRIP, EdiCarrierSimulator
from runbooks import engine
from runbooks.choices import StepStatus
from tests.runbooks.test_runbooks import en_route_mission, lost_comms_incident, steps

pytestmark = pytest.mark.django_db


def test_lost_comms_failover_books_the_edi_fallback_and_the_mission_completes(
    edi_carrier: Carrier, edi_sim: EdiCarrierSimulator, edi_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    mission = en_route_mission()
    incident = lost_comms_incident(mission)
    engine.runbook_advance(run_id=incident.run.pk)
    with (
        time_machine.travel(incident.triggered_at + timedelta(seconds=301)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        engine.runbook_advance(run_id=incident.run.pk)
    failover = steps(incident)[6]
    assert failover.status == StepStatus.WAITING and failover.result["fallback"] == "red-river"
    tender = Tender.objects.get(pk=failover.result["tender"])
    assert tender.is_fallback and tender.status == TenderStatus.SENT and tender.offered_price_usd is not None
    mission.refresh_from_db()
    assert mission.status == MissionStatus.HANDED_OVER

    # The carrier reads the 204, acknowledges it and accepts; the console reads the answers.
    edi_sim.step_seconds = 1.0
    assert edi_sim.tick(now=0.0) == 2 and edi_sim.received == ["204"]
    with django_capture_on_commit_callbacks(execute=True):
        assert services.folder_poll() == 2
    replacement = Mission.objects.get(replaces=mission)
    assert replacement.carrier == edi_carrier and replacement.tender == tender
    assert replacement.price_usd == tender.offered_price_usd  # the pre-approved rate the 204 carried
    with time_machine.travel(incident.triggered_at + timedelta(seconds=310)):
        engine.runbook_advance(run_id=incident.run.pk)
    assert steps(incident)[6].status == StepStatus.DONE and steps(incident)[7].status == StepStatus.SKIPPED
    incident.refresh_from_db()
    assert incident.time_to_failover_seconds is not None

    # The trip, one 214 per step, each read by the console.
    for n in range(1, len(TRIP) + 1):
        assert edi_sim.tick(now=float(n)) == 1
        assert services.folder_poll() == 1
    replacement.refresh_from_db()
    assert replacement.status == MissionStatus.COMPLETED
    assert replacement.shipment.status == ShipmentStatus.DELIVERED

    # Every interchange acknowledged by a 997: ours by the carrier's, the carrier's by ours.
    edi_sim.tick(now=99.0)  # the carrier reads the console's 997s
    received = EdiInterchange.objects.filter(direction=EdiDirection.INBOUND).exclude(transaction_types="997")
    assert sorted(received.values_list("transaction_types", flat=True)) == ["214"] * len(TRIP) + ["990"]
    for record in received:
        assert record.status == EdiStatus.ACCEPTED, record.errors
        assert record.ack_status == EdiAckStatus.ACCEPTED and record.ack.transaction_types == "997"
    (sent_204,) = EdiInterchange.objects.filter(direction=EdiDirection.OUTBOUND, transaction_types="204")
    assert sent_204.ack_status == EdiAckStatus.ACCEPTED
    assert edi_sim.received.count("997") == len(TRIP) + 1
    assert not any((edi_dir / "red-river" / "inbound").glob("*.x12"))  # every file read
