"""Read queries of the OTA capability: the console's repository page and the fleet-resume check."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from missions.models import AuditEvent, CarrierOtaRepository, SoftwareStatus, VehicleSoftware

OTA_ACTIONS = ("ota_repository.refresh_failed", "ota_repository.refreshed", "vehicle.software_refused")


def ota_repositories() -> QuerySet[CarrierOtaRepository]:
    return CarrierOtaRepository.objects.select_related("carrier").order_by("carrier__name", "role")


def ota_recent_events(limit: int = 50) -> list[AuditEvent]:
    """The latest refresh outcomes and refusals, newest first, with their reasons."""
    return list(AuditEvent.objects.filter(action__in=OTA_ACTIONS).select_related("carrier").order_by("-id")[:limit])


def refused_software(carrier_id: int | None = None) -> QuerySet[VehicleSoftware]:
    rows = VehicleSoftware.objects.filter(status=SoftwareStatus.REFUSED).select_related("vehicle__carrier")
    return rows.filter(vehicle__carrier_id=carrier_id) if carrier_id is not None else rows


@dataclass(frozen=True)
class FleetSoftware:
    """What stands between a carrier's paused fleet and resuming it, as far as its software goes."""

    verified: list[VehicleSoftware]
    refused: list[VehicleSoftware]

    @property
    def resumable(self) -> bool:
        return not self.refused


def fleet_software(carrier_id: int) -> FleetSoftware:
    rows = list(VehicleSoftware.objects.filter(vehicle__carrier_id=carrier_id).select_related("vehicle"))
    return FleetSoftware(
        verified=[r for r in rows if r.status == SoftwareStatus.VERIFIED],
        refused=[r for r in rows if r.status == SoftwareStatus.REFUSED],
    )
