"""Models of the missions app, split by area; import them from here."""

from missions.models.core import (
    AuditEvent,
    Carrier,
    CarrierCircuit,
    Mission,
    MissionException,
    Offer,
    Shipment,
    TelemetrySample,
    Tender,
    Vehicle,
    haversine_km,
)

__all__ = [
    "AuditEvent",
    "Carrier",
    "CarrierCircuit",
    "Mission",
    "MissionException",
    "Offer",
    "Shipment",
    "TelemetrySample",
    "Tender",
    "Vehicle",
    "haversine_km",
]
