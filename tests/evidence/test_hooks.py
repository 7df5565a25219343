"""The domain services attest what they change: assignment, mode changes, outcome, reviews, webhooks."""

from __future__ import annotations

from typing import Any

import pytest

from missions import services
from missions.choices import AutonomyMode, MissionStatus
from missions.events import Actor
from missions.models import Mission
from missions.models.evidence import Attestation
from runbooks.choices import IncidentStatus
from runbooks.services import incident_open, incident_transition
from tests.factories import CarrierFactory, ShipmentFactory, VehicleFactory

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test")


def kinds(subject_type: str, subject_id: int) -> list[str]:
    return list(
        Attestation.objects.filter(subject_type=subject_type, subject_id=subject_id)
        .order_by("log_index")
        .values_list("kind", flat=True)
    )


def test_mission_lifecycle_is_attested_in_log_order(django_capture_on_commit_callbacks: Any) -> None:
    carrier = CarrierFactory()
    VehicleFactory(carrier=carrier, external_id="LSA-9")
    shipment = ShipmentFactory()
    with django_capture_on_commit_callbacks(execute=True):
        tender = services.tender_create(actor=SYSTEM, shipment_id=shipment.pk, carrier_id=carrier.pk)
        services.tender_mark_sent(tender_id=tender.pk, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        services.offer_record(
            tender_id=tender.pk, actor=Actor.for_carrier(carrier), kind="accept", vehicle_external_id="LSA-9"
        )
    mission = Mission.objects.get(tender=tender)
    for status in (MissionStatus.EN_ROUTE, MissionStatus.ARRIVING):
        with django_capture_on_commit_callbacks(execute=True):
            services.mission_transition(mission_id=mission.pk, to_status=status, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        services.mission_autonomy_change(mission_id=mission.pk, mode=AutonomyMode.MANUAL, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.COMPLETED, actor=SYSTEM)
    assert kinds("mission", mission.pk) == ["mission-assignment", "autonomy-mode-change", "mission-outcome"]
    indexes = list(Attestation.objects.order_by("log_index").values_list("log_index", flat=True))
    assert indexes == list(range(len(indexes)))


def test_incident_review_is_attested(django_capture_on_commit_callbacks: Any) -> None:
    incident, _ = incident_open(actor=SYSTEM, kind="other", title="Review me", carrier=CarrierFactory())
    incident_transition(incident_id=incident.pk, to_status=IncidentStatus.RESOLVED, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        incident_transition(
            incident_id=incident.pk, to_status=IncidentStatus.CLOSED, actor=SYSTEM, review="Root cause found."
        )
    assert kinds("incident", incident.pk) == ["incident-review"]


def test_breach_verdict_bundle_is_attached_to_the_dispute_view(
    django_capture_on_commit_callbacks: Any, sla_manager: Any
) -> None:
    from datetime import date
    from decimal import Decimal

    from django.utils import timezone

    from missions.evidence.bundle import bundle_verify
    from sla.services import breach_decide, breach_record
    from sla.sli import SLIName, SLIResult
    from tests.conftest import verified_client
    from tests.factories import ContractFactory

    carrier = CarrierFactory()
    contract = ContractFactory(carrier=carrier, effective_from=date(2020, 1, 1), monthly_fee_usd=Decimal("20000"))
    now = timezone.now()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    result = SLIResult(SLIName.ON_TIME, carrier.pk, "month", start, now, 80, 100, Decimal("80"), "pct", {})
    breach = breach_record(
        carrier_id=carrier.pk, contract_id=contract.pk, result=result, target=Decimal("95"), actor=SYSTEM
    )
    with django_capture_on_commit_callbacks(execute=True):
        breach_decide(
            breach_id=breach.pk, actor=Actor.for_user(sla_manager), decision="dispute", reason="force majeure: storm"
        )
    assert kinds("breach", breach.pk) == ["sla-breach-verdict"]
    client = verified_client(sla_manager)
    page = client.get(f"/sla/dashboard/breaches/{breach.pk}/").content.decode()
    assert f"/evidence/breaches/{breach.pk}/bundle/" in page
    bundle = client.get(f"/evidence/breaches/{breach.pk}/bundle/")
    assert bundle.status_code == 200
    report = bundle_verify(bundle.content)
    assert report.ok, report
