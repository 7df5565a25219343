"""Services for the vehicle that drives a mission: which registered truck a carrier names for it.

A carrier names its truck when it accepts a tender. A load booked without one (the fallback
carrier's standing agreement, accepted by the failover runbook on the carrier's behalf) gets its
truck afterwards, from the carrier, so its telemetry can be tracked like any other.
"""

from __future__ import annotations

from django.db import transaction

from missions.events import Actor, event_record
from missions.models import Carrier, Mission, Vehicle
from missions.transitions import MISSION_ACTIVE
from tms_console.domain import Conflict, DomainError


def vehicle_of_carrier(carrier: Carrier, external_id: str) -> Vehicle:
    """The carrier's registered vehicle with this id, or a field error naming it."""
    try:
        return Vehicle.objects.get(carrier=carrier, external_id=external_id)
    except Vehicle.DoesNotExist:
        raise DomainError(
            f"Vehicle '{external_id}' is not registered for {carrier.name}.", field="vehicle_external_id"
        ) from None


@transaction.atomic
def mission_vehicle_assign(*, mission_id: int, vehicle_external_id: str, actor: Actor) -> Mission:
    """Name the truck of a mission booked without one; naming the same truck again changes nothing.

    A mission that has its truck keeps it (the truck is who its telemetry comes from and what its
    evidence names), and a finished mission takes none.
    """
    external_id = vehicle_external_id.strip()
    if not external_id:
        raise DomainError("Name the vehicle: vehicle_external_id is empty.", field="vehicle_external_id")
    # of=("self",): PostgreSQL cannot lock the nullable side of the outer join to the vehicle.
    mission = (
        Mission.objects.select_for_update(of=("self",))
        .select_related("carrier", "vehicle", "shipment")
        .get(pk=mission_id)
    )
    if mission.vehicle is not None:
        if mission.vehicle.external_id == external_id:
            return mission
        raise Conflict(f"Mission {mission.pk} is driven by {mission.vehicle.external_id}; its vehicle cannot change.")
    if mission.status not in MISSION_ACTIVE:
        raise Conflict(f"Mission {mission.pk} is {mission.status}; it no longer takes a vehicle.")
    vehicle = vehicle_of_carrier(mission.carrier, external_id)
    mission.vehicle = vehicle
    mission.save(update_fields=["vehicle", "updated_at"])
    event_record(
        actor=actor,
        action="mission.vehicle_assigned",
        subject_type="mission",
        subject_id=mission.pk,
        before={"vehicle": None},
        after={"vehicle": vehicle.external_id},
        correlation_id=mission.correlation_id,
        shipment=mission.shipment,
        mission=mission,
        carrier=mission.carrier,
    )
    return mission
