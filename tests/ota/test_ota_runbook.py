"""End to end: a vehicle reports unsigned software -> OTA runbook -> fleet paused -> fixed -> on-call resumes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from missions.choices import MissionStatus
from missions.models import AuditEvent, Carrier, Mission, SoftwareStatus, VehicleSoftware
from missions.ota.services import ota_repository_refresh
from missions.selectors import carrier_fit
from missions.telemetry.ingest import ingest_events
from runbooks import engine
from runbooks.choices import IncidentStatus
from runbooks.models import Incident
from tests.conftest import verified_client
from tests.factories import MissionFactory, ShipmentFactory
from tests.ota.conftest import configure
from tests.telemetry.conftest import make_event
from tests.tuf_repository import TufRepository

pytestmark = pytest.mark.django_db(transaction=True)  # subscribers run at real commits


def report(mission: Mission, version: str) -> None:
    result = ingest_events(
        carrier=mission.carrier, events=[make_event(mission, software_version=version)], source="test"
    )
    assert result.accepted == 1, result.rejected


def test_unsigned_version_pauses_the_fleet_until_on_call_resumes_it(
    carrier_a: Carrier, oncall: User, image_repo: TufRepository
) -> None:
    repo = configure(carrier_a, image_repo)
    ota_repository_refresh(repository_id=repo.pk)
    mission = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    shipment = ShipmentFactory()
    assert carrier_fit(carrier=carrier_a, shipment=shipment).eligible

    report(mission, "av-stack/4.2.1")  # signed: nothing happens
    assert VehicleSoftware.objects.get(vehicle=mission.vehicle).status == SoftwareStatus.VERIFIED
    assert not Incident.objects.exists()

    report(mission, "av-stack/5.0.0-unsigned")
    row = VehicleSoftware.objects.get(vehicle=mission.vehicle)
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "not_a_target"
    incident = Incident.objects.get(kind="ota_failure", carrier=carrier_a)
    assert incident.vehicle_id == mission.vehicle_id
    engine.runbook_advance(run_id=incident.run.pk)
    carrier_a.refresh_from_db()
    assert carrier_a.fleet_paused
    fit = carrier_fit(carrier=carrier_a, shipment=shipment)
    assert not fit.eligible and any("fleet paused" in r for r in fit.reasons)

    client = verified_client(oncall)
    page = client.get(f"/incidents/{incident.pk}/")
    assert b"av-stack/5.0.0-unsigned" in page.content and b"Resume the fleet" not in page.content
    # Resuming while the vehicle still runs the unsigned version is refused.
    client.post(f"/incidents/{incident.pk}/ota-resume/", {"note": "carrier says it is fine"})
    carrier_a.refresh_from_db()
    assert carrier_a.fleet_paused

    # Fixed: the carrier rolls the vehicle forward to a version its metadata signs.
    image_repo.add_target("av-stack/5.0.1", release_counter=50)
    image_repo.publish()
    ota_repository_refresh(repository_id=repo.pk)
    report(mission, "av-stack/5.0.1")
    assert VehicleSoftware.objects.get(vehicle=mission.vehicle).status == SoftwareStatus.VERIFIED
    assert b"Resume the fleet" in client.get(f"/incidents/{incident.pk}/").content

    response = client.post(f"/incidents/{incident.pk}/ota-resume/", {"note": "5.0.1 signed and deployed"})
    assert response.status_code == 302
    carrier_a.refresh_from_db()
    incident.refresh_from_db()
    assert not carrier_a.fleet_paused and incident.status == IncidentStatus.RESOLVED
    resumed = AuditEvent.objects.get(action="carrier.fleet_resumed", subject_id=carrier_a.pk)
    assert resumed.actor_user_id == oncall.pk and "5.0.1 signed and deployed" in resumed.data["confirmation"]
    assert carrier_fit(carrier=carrier_a, shipment=shipment).eligible


def test_a_security_refusal_of_the_metadata_opens_the_runbook(carrier_a: Carrier, image_repo: TufRepository) -> None:
    repo = configure(carrier_a, image_repo)
    ota_repository_refresh(repository_id=repo.pk)
    older = image_repo.saved()
    image_repo.publish()
    ota_repository_refresh(repository_id=repo.pk)
    image_repo.restore(older)
    ota_repository_refresh(repository_id=repo.pk)
    incident = Incident.objects.get(kind="ota_failure", carrier=carrier_a)
    assert "rollback" in incident.title


def test_the_version_is_reported_once_per_change(carrier_a: Carrier, image_repo: TufRepository, settings: Any) -> None:
    mission = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    for _ in range(3):
        report(mission, "av-stack/4.2.1")
    report(mission, "av-stack/4.2.0")
    ingest_events(carrier=carrier_a, events=[make_event(mission)], source="test")  # no version: nothing
    reported = AuditEvent.objects.filter(action="vehicle.software_reported").order_by("id")
    assert [e.data["version"] for e in reported] == ["av-stack/4.2.1", "av-stack/4.2.0"]
