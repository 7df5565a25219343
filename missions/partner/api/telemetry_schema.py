"""The telemetry request contract of the partner API (REST single event and batch, webhooks).

These serializers document the wire shape in the OpenAPI schema and give
field-pointed errors on the single-event endpoint. The ingest pipeline
(``missions.telemetry.normalize``) validates every event again on its hot
path with the same names and bounds, so the batch endpoint hands raw events
straight to it instead of running a serializer per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from missions.choices import AutonomyMode, MissionStatus
from missions.partner.api.fields import (
    ID_MAX,
    Rfc3339DateTimeField,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
    StrictUUIDField,
)
from missions.telemetry.normalize import (
    ACCURACY_M_MAX,
    ECU_ERROR_CODE_MAX,
    ECU_ERRORS_MAX,
    LATENCY_MS_MAX,
    SAFETY_EVENTS,
    SOFTWARE_VERSION_MAX,
    SPEED_KPH_MAX,
    UPLINKS,
    VEHICLE_ID_MAX,
)

TELEMETRY_FIELDS = [
    "schema_version",
    "event_id",
    "mission_id",
    "vehicle_id",
    "correlation_id",
    "ts",
    "position",
    "mission_state",
    "autonomy_mode",
    "health",
    "connectivity",
    "safety_event",
    "software_version",
]


class StrictSerializer(serializers.Serializer[dict[str, Any]]):
    """Refuses unknown fields, as the pipeline does, so a typo is an error rather than silently dropped.

    Checked on the data each (nested) serializer receives: DRF keeps ``initial_data`` for the
    outermost one only. The schema says so too (``additionalProperties: false``, added by
    ``missions.partner.api.schema``).
    """

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError({str(name): ["Unknown field."] for name in sorted(map(str, unknown))})
        validated: dict[str, Any] = super().to_internal_value(data)
        return validated


class PositionSerializer(StrictSerializer):
    """WGS 84 position; speed in km/h, heading in degrees from true north, accuracy in metres."""

    lat = StrictFloatField(min_value=-90.0, max_value=90.0)
    lon = StrictFloatField(min_value=-180.0, max_value=180.0)
    speed_kph = StrictFloatField(min_value=0.0, max_value=SPEED_KPH_MAX, required=False, allow_null=True)
    heading_deg = StrictFloatField(min_value=0.0, max_value=360.0, required=False, allow_null=True)
    accuracy_m = StrictFloatField(min_value=0.0, max_value=ACCURACY_M_MAX, required=False, allow_null=True)


class HealthSerializer(StrictSerializer):
    """Vehicle health as the autonomy stack reports it."""

    fuel_pct = StrictFloatField(min_value=0.0, max_value=100.0, required=False, allow_null=True)
    battery_pct = StrictFloatField(min_value=0.0, max_value=100.0, required=False, allow_null=True)
    critical_sensors_ok = StrictBooleanField(required=False, allow_null=True)
    ecu_errors = serializers.ListField(
        child=StrictCharField(max_length=ECU_ERROR_CODE_MAX),
        required=False,
        allow_null=True,
        max_length=ECU_ERRORS_MAX,
    )
    thermal_warning = StrictBooleanField(required=False, allow_null=True)


class ConnectivitySerializer(StrictSerializer):
    """The vehicle's uplink to its operator."""

    uplink = StrictChoiceField(choices=list(UPLINKS), required=False, allow_null=True)
    packet_loss_pct = StrictFloatField(min_value=0.0, max_value=100.0, required=False, allow_null=True)
    latency_ms = StrictFloatField(min_value=0.0, max_value=LATENCY_MS_MAX, required=False, allow_null=True)


class TelemetryEventSerializer(StrictSerializer):
    """One telemetry event; ``event_id`` is the sender's id, so a resent event is counted once."""

    schema_version = StrictChoiceField(choices=["1"], required=False)
    event_id = StrictUUIDField()
    mission_id = StrictIntegerField(min_value=1, max_value=ID_MAX)
    vehicle_id = StrictCharField(max_length=VEHICLE_ID_MAX, help_text="The carrier's external vehicle id")
    correlation_id = StrictUUIDField(required=False, allow_null=True)
    ts = Rfc3339DateTimeField(help_text="When the sample was taken: RFC 3339 with a UTC offset")
    position = PositionSerializer()
    mission_state = StrictChoiceField(choices=MissionStatus.choices, required=False, allow_null=True)
    autonomy_mode = StrictChoiceField(choices=AutonomyMode.choices, required=False, allow_null=True)
    health = HealthSerializer(required=False, allow_null=True)
    connectivity = ConnectivitySerializer(required=False, allow_null=True)
    safety_event = StrictChoiceField(choices=list(SAFETY_EVENTS), required=False, allow_null=True)
    software_version = StrictCharField(
        min_length=1,
        max_length=SOFTWARE_VERSION_MAX,
        required=False,
        allow_null=True,
        help_text="The vehicle's software: a target path of the carrier's TUF targets metadata. The console checks "
        "it against the carrier's signed metadata when it changes (docs/decisions/0025-ota-verification.md).",
    )


@extend_schema_field(
    {
        "anyOf": [{"$ref": "#/components/schemas/TelemetryEventRequest"}, {}],
        "description": "A TelemetryEvent; any other value is refused on its own in `rejected`.",
    },
    component_name="TelemetryBatchItem",
)
class BatchItemField(serializers.JSONField):
    """One item of a batch: meant to be a ``TelemetryEvent``, judged alone by the ingest pipeline."""


class TelemetryBatchSerializer(serializers.Serializer[dict[str, Any]]):
    """A batch of events; each is accepted or rejected on its own (``rejected`` lists index and reason)."""

    # Only the list is judged as a whole (a non-empty list of at most max_batch_events, else 400 or
    # 413); each item is validated alone by the ingest pipeline, so the schema admits any item.
    events = serializers.ListField(
        child=BatchItemField(), allow_empty=False, min_length=1, max_length=settings.API_TELEMETRY_MAX_BATCH
    )
