"""Models of the missions app, split by area; import them from here."""

from missions.models.bus import BusCursor, BusRefusal  # noqa: F401
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
from missions.models.edi import EdiControlCounter, EdiInterchange, EdiPartner  # noqa: F401
from missions.models.evidence import Attestation, Checkpoint, TransparencyLogEntry  # noqa: F401
from missions.models.flags import CarrierFlag
from missions.models.identity import CarrierTrustDomain, TrustBundleCertificate  # noqa: F401
from missions.models.onboarding import (
    CarrierAuthMethod,
    CarrierInvitation,
    CarrierMember,
    CarrierProfile,
    CertificationDelivery,
    CertificationRun,
    CertificationStatus,
    ComplianceDocument,
    ComplianceKind,
)
from missions.models.ota import CarrierOtaRepository, OtaRepositoryRole, SoftwareStatus, VehicleSoftware
from missions.models.outbound import OutboundCall, TenderWaterfall  # noqa: F401
from missions.models.outbox import EventDelivery, EventDeliveryStatus
from missions.models.partner import (  # noqa: F401
    IdempotencyRecord,
    PartnerClient,
    TokenCertificateBinding,
    WebhookReceipt,
    WebhookSecret,
)
from missions.models.route_plans import CarrierSigningKey, RoutePlan
from missions.models.telemetry import (  # noqa: F401
    DeadLetter,
    DeadLetterStatus,
    TelemetryGap,
    TelemetrySnapshot,
    TelemetryWindowEvent,
)

__all__ = [
    "AuditEvent",
    "Carrier",
    "CarrierAuthMethod",
    "CarrierCircuit",
    "CarrierFlag",
    "CarrierInvitation",
    "CarrierMember",
    "CarrierOtaRepository",
    "CarrierProfile",
    "CarrierSigningKey",
    "CertificationDelivery",
    "CertificationRun",
    "CertificationStatus",
    "ComplianceDocument",
    "ComplianceKind",
    "DeadLetter",
    "DeadLetterStatus",
    "EventDelivery",
    "EventDeliveryStatus",
    "Mission",
    "MissionException",
    "Offer",
    "OtaRepositoryRole",
    "RoutePlan",
    "Shipment",
    "SoftwareStatus",
    "TelemetrySample",
    "Tender",
    "Vehicle",
    "VehicleSoftware",
    "haversine_km",
]
